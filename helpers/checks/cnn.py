"""Checks of the CNN lesson: a network without activations, accuracy on shifted digits, receptive fields."""

from __future__ import annotations

import torch
from torch import nn

from . import NotYet, as_number, call, check_for, describe, need_callable


def _leaves(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if not list(m.children())]


def _spec(m: nn.Module) -> str:
    if isinstance(m, nn.Conv2d):
        return f"Conv2d({m.in_channels}, {m.out_channels}, kernel {m.kernel_size[0]}, stride {m.stride[0]})"
    if isinstance(m, nn.Linear):
        return f"Linear({m.in_features}, {m.out_features})"
    return type(m).__name__


@check_for("linear_cnn", "linear_cnn")
def _linear_cnn(ns: dict) -> str:
    make = need_callable(ns, "linear_cnn")
    simple = ns.get("simple_cnn")
    if simple is None:
        from ..cnn import simple_cnn as simple
    net = call(make, what="linear_cnn()")
    if not isinstance(net, nn.Module):
        raise NotYet(f"linear_cnn() returned {describe(net)}; return a model (nn.Sequential).")
    got = [_spec(m) for m in _leaves(net)]
    expected = [_spec(m) for m in _leaves(call(simple, what="simple_cnn()")) if not isinstance(m, nn.ReLU)]
    if got == expected:
        return f"simple_cnn's {len(expected)} layers without a ReLU."
    if "ReLU" in got:
        raise NotYet(f"there is still a ReLU (layer {got.index('ReLU') + 1}): leave out every activation.")
    if got[:-1] == expected[:-1]:
        raise NotYet(f"the last layer is {got[-1]}; keep simple_cnn's, {expected[-1]}.")
    i = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    raise NotYet(
        f"layer {i + 1} is {got[i] if i < len(got) else 'missing'}; simple_cnn without its ReLUs has "
        f"{expected[i] if i < len(expected) else 'no more layers'} there."
    )


@check_for("shifted_accuracy", "shifted_accuracy")
def _shifted(ns: dict) -> str:
    fn = need_callable(ns, "shifted_accuracy")
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    x = torch.rand(256, 1, 28, 28)
    with torch.no_grad():
        y = model(torch.roll(x, 4, dims=-1)).argmax(1)  # right only when shifted 4 pixels to the right
        y[::4] = (y[::4] + 1) % 10  # and wrong on every fourth image: 0.75 when right

    def acc(images):
        with torch.no_grad():
            return (model(images).argmax(1) == y).float().mean().item()

    got = as_number(call(fn, model, x, y, 4, what="shifted_accuracy(model, x, y, 4)"), "shifted_accuracy")
    expected = acc(torch.roll(x, 4, dims=-1))
    if abs(got - expected) < 1e-6:
        return "accuracy on the images moved right by `pixels`, as a fraction."
    mistakes = {
        "you shifted the rows (down): move the digits to the right, along the last dimension (dims=-1).": acc(
            torch.roll(x, 4, dims=-2)
        ),
        "torch.roll without dims shifts the flattened image: give dims=-1.": acc(torch.roll(x, 4)),
        "the images were not shifted: torch.roll returns a new tensor, use what it returns.": acc(x),
        "give the accuracy as a fraction (0.75), not a count or a percentage.": None,
    }
    for hint, value in mistakes.items():
        if value is not None and abs(got - value) < 1e-6 and abs(value - expected) > 1e-6:
            raise NotYet(hint)
    if got > 1:
        raise NotYet("give the accuracy as a fraction (0.75), not a count or a percentage.")
    raise NotYet(f"on hidden images shifted 4 pixels right, expected an accuracy of {expected:.4f}, got {got:.4f}.")


def receptive_field(n_layers: int, kernel: int = 3, stride: int = 2) -> int:
    return 1 + sum((kernel - 1) * stride**i for i in range(n_layers))


CASES = ((1, 3, 2), (2, 3, 2), (3, 3, 2), (4, 5, 3), (2, 3, 1))


@check_for("receptive_field", "receptive_field")
def _receptive_field(ns: dict) -> str:
    fn = need_callable(ns, "receptive_field")
    mistakes = {
        "you forgot the stride: each layer's kernel spans pixels that are stride**(layers below) apart.": (
            lambda n, k, s: 1 + n * (k - 1)
        ),
        "each layer adds kernel - 1 pixels (times the strides below), not kernel.": (
            lambda n, k, s: 1 + sum(k * s**i for i in range(n))
        ),
    }
    for n, k, s in CASES:
        got = call(fn, n, kernel=k, stride=s, what=f"receptive_field({n}, kernel={k}, stride={s})")
        expected = receptive_field(n, k, s)
        if got == expected:
            continue
        for hint, wrong in mistakes.items():
            if got == wrong(n, k, s):
                raise NotYet(hint)
        raise NotYet(f"receptive_field({n}, kernel={k}, stride={s}) gave {got!r}; expected {expected}.")
    return "3, 7, 15 pixels for 1 to 3 layers of 3x3 with stride 2, and right for other kernels and strides."
