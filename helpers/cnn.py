"""What lesson 07 builds: a small convolutional network for 28x28 digits, its size arithmetic, and a
picture of what its layers hold (filters, activations)."""

from __future__ import annotations

from torch import nn

from .plots import show_maps  # drawn by lesson 07 too: any 2-D maps, not only 28x28 digits

__all__ = ["conv_out_size", "conv", "simple_cnn", "show_maps"]


def conv_out_size(n: int, kernel: int = 3, stride: int = 2, padding: int = 1) -> int:
    """Side of a convolution's output for an input of side `n`: (n + 2*padding - kernel) // stride + 1."""
    return (n + 2 * padding - kernel) // stride + 1


def conv(ni: int, nf: int, act: bool = True) -> nn.Sequential:
    """A 3x3 convolution from `ni` to `nf` channels with stride 2 and padding 1 (it halves the side,
    rounding up), followed by a ReLU unless `act` is False."""
    layers: list[nn.Module] = [nn.Conv2d(ni, nf, kernel_size=3, stride=2, padding=1)]
    if act:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def simple_cnn() -> nn.Sequential:
    """1x28x28 -> 8x14x14 -> 16x7x7 -> 32x4x4 -> 512 -> 10 class scores: three strided
    convolutions, then one linear layer."""
    return nn.Sequential(conv(1, 8), conv(8, 16), conv(16, 32), nn.Flatten(), nn.Linear(32 * 4 * 4, 10))
