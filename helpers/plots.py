"""The pictures of the lessons: digits, weights as images, training curves, the seven steps."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import torch
from torch import Tensor

__all__ = ["show_images", "plot_history", "seven_steps"]


def show_images(images: Tensor | Sequence[Tensor], titles: Sequence[str] | None = None, ncols: int = 8,
                size: float = 1.2, cmap: str = "Greys", diverging: bool = False):
    """Show a few 28x28 images (or 784-vectors) in a row or grid. `diverging` centres a red/blue map at 0."""
    images = [torch.as_tensor(im).detach().float().cpu().view(28, 28) for im in images]
    ncols = min(ncols, len(images))
    nrows = (len(images) + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * (1.25 if titles else 1)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        im = images[i]
        if diverging:
            lim = float(im.abs().max())
            ax.imshow(im, cmap="RdBu", vmin=-lim, vmax=lim)
        else:
            ax.imshow(im, cmap=cmap)
        if titles:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    plt.show()


def plot_history(series: dict[str, Sequence[float]], xlabel: str = "epoch", ylabel: str = "",
                 title: str = "", reference: dict[str, float] | None = None):
    """Curves (one per name) against their step number, with optional horizontal reference lines."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, ys in series.items():
        ax.plot(range(1, len(ys) + 1), list(ys), marker="o" if len(ys) <= 30 else None, ms=3, label=name)
    for name, y in (reference or {}).items():
        ax.axhline(y, ls="--", lw=1, color="grey")
        ax.annotate(name, (1, y), textcoords="offset points", xytext=(2, 3), fontsize=8, color="grey")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    plt.show()


def seven_steps():
    """The training loop as a diagram: init, then predict, loss, gradient, step, repeated, then stop."""
    steps = ["init", "predict", "loss", "gradient", "step", "stop"]
    xs = [0, 1.6, 3.2, 4.8, 6.4, 8.0]
    fig, ax = plt.subplots(figsize=(9, 2.2))
    for x, s in zip(xs, steps):
        ax.text(x, 0, s, ha="center", va="center", fontsize=11,
                bbox=dict(boxstyle="round,pad=0.4", fc="#e8f0fe" if s not in ("init", "stop") else "#f3f3f3",
                          ec="#4a6fa5"))
    for a, b in zip(xs[:-1], xs[1:]):
        ax.annotate("", xy=(b - 0.55, 0), xytext=(a + 0.55, 0), arrowprops=dict(arrowstyle="->", color="#4a6fa5"))
    ax.annotate("", xy=(1.6, 0.28), xytext=(6.4, 0.28),
                arrowprops=dict(arrowstyle="->", color="#c0504d", connectionstyle="arc3,rad=0.35"))
    ax.text(4.0, 0.95, "repeat", ha="center", color="#c0504d", fontsize=10)
    ax.set_xlim(-0.8, 8.8)
    ax.set_ylim(-0.5, 1.2)
    ax.axis("off")
    fig.tight_layout()
    plt.show()
