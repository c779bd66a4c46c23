"""Lesson 07's convolutional network as the lesson writes it and as `helpers.cnn` provides it: the same
signatures, layers and outputs; and the size arithmetic the lesson's prose relies on."""

from __future__ import annotations

import inspect

import matplotlib
import pytest
import torch
import torch.nn.functional as F
from test_lessons_agree import from_lesson

from helpers import cnn
from tools import classroom

L07 = classroom.lesson("07").name


def same_signature(a, b) -> bool:
    """Same parameter names and defaults (the lesson's functions carry no annotations)."""
    pa, pb = inspect.signature(a).parameters, inspect.signature(b).parameters
    return [(p.name, p.default) for p in pa.values()] == [(p.name, p.default) for p in pb.values()]


@pytest.mark.parametrize("n", [1, 4, 5, 7, 14, 28])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1])
def test_conv_out_size_is_what_conv2d_gives(n, stride, padding):
    if n + 2 * padding < 3:
        pytest.skip("a 3x3 kernel does not fit")
    out = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, 3, 3), stride=stride, padding=padding)
    assert out.shape[-2:] == (cnn.conv_out_size(n, 3, stride, padding),) * 2


def test_lesson07_functions_are_the_helpers():
    size = from_lesson(L07, "conv_out_size")
    assert same_signature(size, cnn.conv_out_size)
    assert [size(n) for n in range(1, 40)] == [cnn.conv_out_size(n) for n in range(1, 40)]
    conv = from_lesson(L07, "conv")
    assert same_signature(conv, cnn.conv)
    for act in (True, False):
        assert repr(conv(3, 5, act)) == repr(cnn.conv(3, 5, act))
    simple_cnn = from_lesson(L07, "simple_cnn", conv=conv)
    assert same_signature(simple_cnn, cnn.simple_cnn)
    torch.manual_seed(0)
    ours = simple_cnn()
    torch.manual_seed(0)
    theirs = cnn.simple_cnn()
    assert repr(ours) == repr(theirs)
    x = torch.rand(5, 1, 28, 28)
    assert torch.equal(ours(x), theirs(x))


def test_simple_cnn_shapes_and_parameter_count():
    model = cnn.simple_cnn()
    x, shapes = torch.rand(3, 1, 28, 28), []
    for layer in model:
        x = layer(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(8, 14, 14), (16, 7, 7), (32, 4, 4), (512,), (10,)]
    assert sum(p.numel() for p in model.parameters()) == 11_018
    assert all((layer(torch.randn(2, 1, 28, 28)) >= 0).all() for layer in model[:1])  # ReLU after the first conv


def test_conv_without_activation_is_linear():
    layer = cnn.conv(2, 4, act=False)
    a, b = torch.randn(1, 2, 9, 9), torch.randn(1, 2, 9, 9)
    zero = layer(torch.zeros_like(a))  # the bias alone
    assert torch.allclose(layer(a + b) - zero, (layer(a) - zero) + (layer(b) - zero), atol=1e-5)


def test_show_maps_draws_each_map(monkeypatch):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    cnn.show_maps(torch.randn(5, 3, 3), titles=[str(i) for i in range(5)], ncols=3, diverging=True)
    (fig,) = shown
    with_image = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and len(with_image) == 5
    assert [ax.get_title() for ax in with_image] == ["0", "1", "2", "3", "4"]
    lo, hi = with_image[0].images[0].get_clim()
    assert lo == -hi  # diverging: centred at 0
    plt.close(fig)
