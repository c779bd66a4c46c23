"""The pictures of the lessons: digits, weights as images, training curves, diagrams."""

from __future__ import annotations

import re
import shutil
from typing import Sequence

import matplotlib.pyplot as plt
import torch
from torch import Tensor

__all__ = ["show_images", "show_maps", "plot_history", "gv"]


def show_maps(
    maps: Tensor | Sequence[Tensor],
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 1.2,
    cmap: str = "Greys",
    diverging: bool = False,
    shared: bool = False,
) -> None:
    """Show 2-D maps of any size (digits, filters, activations) in a row or grid; `diverging` centres
    a red/blue colour map at 0, so that positive and negative values read apart. Each map is scaled
    to its own range, unless `shared`: then all use one scale, shown by a colour bar, so that maps
    can be compared with each other."""
    maps = [torch.as_tensor(m).detach().float().cpu().numpy() for m in maps]
    ncols = min(ncols, len(maps))
    nrows = (len(maps) + ncols - 1) // ncols
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows * (1.25 if titles else 1)), squeeze=False
    )
    lo, hi = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(maps):
            continue
        lim = (max(abs(lo), abs(hi)) if shared else float(abs(maps[i]).max())) or 1.0
        if diverging:
            image = ax.imshow(maps[i], cmap="RdBu", vmin=-lim, vmax=lim)
        else:
            image = ax.imshow(maps[i], cmap=cmap, **({"vmin": lo, "vmax": hi} if shared else {}))
        if titles:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    if shared:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, pad=0.01)
    plt.show()


def show_images(
    images: Tensor | Sequence[Tensor],
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 1.2,
    cmap: str = "Greys",
    diverging: bool = False,
) -> None:
    """Show a few 28x28 images (or 784-vectors) in a row or grid. `diverging` centres a red/blue map at 0."""
    show_maps([torch.as_tensor(im).view(28, 28) for im in images], titles, ncols, size, cmap, diverging)


def plot_history(
    series: dict[str, Sequence[float]],
    xlabel: str = "epoch",
    ylabel: str = "",
    title: str = "",
    reference: dict[str, float] | None = None,
    first: int = 1,
):
    """Curves (one per name) against their step number, with optional horizontal reference lines.

    ``first`` is the number of the step the first value was measured after (1 unless the history
    starts later, as when a run continues one that was measured on its own).
    """
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name, ys in series.items():
        ax.plot(range(first, first + len(ys)), list(ys), marker="o" if len(ys) <= 30 else None, ms=3, label=name)
    for name, y in (reference or {}).items():
        ax.axhline(y, ls="--", lw=1, color="grey")
        ax.annotate(name, (first, y), textcoords="offset points", xytext=(2, 3), fontsize=8, color="grey")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend()
    fig.tight_layout()
    plt.show()


def _graphviz_available() -> bool:
    """True where the `graphviz` package and its `dot` program are both installed."""
    if shutil.which("dot") is None:
        return False
    try:
        import graphviz  # noqa: F401
    except ImportError:
        return False
    return True


def gv(source: str):
    """A diagram from DOT edges such as ``"a->b->c; c->a[label=again]"``, drawn left to right.

    fastbook's ``gv`` does the same (``graphviz.Source('digraph G{ rankdir="LR"' + s + '; }')``);
    importing fastbook costs seconds, so this is its copy on the `graphviz` package alone. Where
    graphviz (the package or its ``dot`` program) is missing, the same edges are drawn with
    matplotlib: the nodes in a row in order of appearance, edges back along the row as arcs.
    """
    if _graphviz_available():
        import graphviz

        return graphviz.Source('digraph G{ rankdir="LR"' + source + "; }")
    _draw_edges(_parse_edges(source))
    return None


_EDGE_CHAIN = re.compile(r"^(?P<chain>[^\[]+?)\s*(?:\[\s*label\s*=\s*\"?(?P<label>[^\]\"]*)\"?\s*\])?$")


def _parse_edges(source: str) -> list[tuple[str, str, str]]:
    """The edges ``(from, to, label)`` of DOT statements ``a->b->c`` and ``a->b[label=x]``, one per line or ``;``."""
    edges = []
    for statement in re.split(r"[;\n]", source):
        statement = statement.strip()
        if not statement:
            continue
        m = _EDGE_CHAIN.match(statement)
        nodes = [n.strip() for n in m["chain"].split("->")] if m else []
        if len(nodes) < 2 or not all(nodes):
            raise ValueError(f"cannot draw {statement!r}: write edges as a->b->c or a->b[label=text]")
        edges += [(a, b, m["label"] or "") for a, b in zip(nodes, nodes[1:])]
    return edges


def _draw_edges(edges: list[tuple[str, str, str]]) -> None:
    """Nodes in a row, forward edges between neighbours as straight arrows, every other edge as a labelled arc."""
    order = list(dict.fromkeys(n for a, b, _ in edges for n in (a, b)))
    pos = {n: i for i, n in enumerate(order)}
    x = {n: 1.6 * i for n, i in pos.items()}
    fig, ax = plt.subplots(figsize=(1.5 * len(order), 2.2))
    for n in order:
        ax.text(
            x[n],
            0,
            n,
            ha="center",
            va="center",
            fontsize=11,
            bbox=dict(boxstyle="round,pad=0.4", fc="#e8f0fe", ec="#4a6fa5"),
        )
    for a, b, label in edges:
        if pos[b] == pos[a] + 1:
            ax.annotate(
                "", xy=(x[b] - 0.55, 0), xytext=(x[a] + 0.55, 0), arrowprops=dict(arrowstyle="->", color="#4a6fa5")
            )
            if label:
                ax.text((x[a] + x[b]) / 2, 0.12, label, ha="center", fontsize=9, color="#4a6fa5")
        else:
            ax.annotate(
                "",
                xy=(x[b], 0.28),
                xytext=(x[a], 0.28),
                arrowprops=dict(arrowstyle="->", color="#c0504d", connectionstyle="arc3,rad=0.35"),
            )
            ax.text((x[a] + x[b]) / 2, 0.28 + 0.1 * abs(x[b] - x[a]), label, ha="center", color="#c0504d", fontsize=10)
    ax.set_xlim(-0.8, x[order[-1]] + 0.8)
    ax.set_ylim(-0.5, 1.2)
    ax.axis("off")
    fig.tight_layout()
    plt.show()
