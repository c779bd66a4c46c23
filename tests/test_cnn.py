"""Lesson 08's convolutional network (helpers.cnn, exported from the lesson): the size arithmetic
the lesson's prose relies on, the layers and their parameters; and the maps it draws (helpers.plots)."""

from __future__ import annotations

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from helpers import cnn, plots


@pytest.mark.parametrize("n", [1, 4, 5, 7, 14, 28])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1])
def test_conv_out_size_is_what_conv2d_gives(n, stride, padding):
    if n + 2 * padding < 3:
        pytest.skip("a 3x3 kernel does not fit")
    out = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, 3, 3), stride=stride, padding=padding)
    assert out.shape[-2:] == (cnn.conv_out_size(n, 3, stride, padding),) * 2


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
    plots.show_maps(torch.randn(5, 3, 3), titles=[str(i) for i in range(5)], ncols=3, diverging=True)
    (fig,) = shown
    with_image = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 6 and len(with_image) == 5
    assert [ax.get_title() for ax in with_image] == ["0", "1", "2", "3", "4"]
    lo, hi = with_image[0].images[0].get_clim()
    assert lo == -hi  # diverging: centred at 0
    plt.close(fig)


def test_show_maps_shared_puts_every_map_on_one_scale_with_a_colour_bar(monkeypatch):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.gcf()))
    maps = [torch.full((3, 3), 0.5), torch.arange(9.0).view(3, 3)]
    plots.show_maps(maps, shared=True)
    plots.show_maps(maps)
    shared, separate = shown
    assert [ax.images[0].get_clim() for ax in shared.axes if ax.images] == [(0.0, 8.0)] * 2
    assert len(shared.axes) == 3  # two maps and the colour bar
    assert [ax.images[0].get_clim() for ax in separate.axes if ax.images][1] == (0.0, 8.0)
    assert len(separate.axes) == 2
    plt.close("all")


def test_conv_act_switches_the_relu():
    assert [type(m).__name__ for m in cnn.conv(1, 2)] == ["Conv2d", "ReLU"]
    assert [type(m).__name__ for m in cnn.conv(1, 2, act=False)] == ["Conv2d"]
