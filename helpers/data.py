"""MNIST for the lessons, as float tensors on a device: what the notebooks call.

``load_3s_and_7s()`` (lessons 00-03) and ``load_mnist()`` (lesson 04). Where the pixels come from,
how they are checked and cached, and how many processes share one data folder safely is the
storage layer's business: ``helpers.storage``. Anything wrong with the data raises ``DataError``,
whose message says what to do. Nothing here prints: progress goes to the ``helpers.data`` logger.
"""

from __future__ import annotations

import torch

from .storage import MNIST, MNIST_SAMPLE, ChecksumError, DataError, load_raw

__all__ = ["ChecksumError", "DataError", "load_3s_and_7s", "load_mnist"]


def _to_float(x: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    return x.to(device=device).float().div_(255)


def load_3s_and_7s(device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The 3-vs-7 sample as float images in [0, 1], shape [n, 28, 28], ordered by MNIST index.

    Keys: ``train_3``, ``train_7``, ``valid_3``, ``valid_7``.
    """
    raw = load_raw(MNIST_SAMPLE)
    out = {}
    for split in ("train", "valid"):
        x, y = raw[f"{split}_x"], raw[f"{split}_y"]
        for d in (3, 7):
            out[f"{split}_{d}"] = _to_float(x[y == d], device)
    return out


def load_mnist(device: torch.device | str | None = None, flat: bool = True) -> dict[str, torch.Tensor]:
    """Full MNIST as float pixels in [0, 1] and int64 labels 0..9.

    ``train`` is the original training set's first 50,000 images, ``valid`` its last 10,000 and
    ``test`` the 10,000 testing images. Keys ``<split>_x`` and ``<split>_y``, named like every key of
    the data layer (split first): ``train_x, train_y, valid_x, valid_y, test_x, test_y``; images are
    [n, 784] when ``flat`` else [n, 28, 28].
    """
    raw = load_raw(MNIST)
    x, y = raw["training_x"], raw["training_y"]
    parts = {
        "train": (x[:50_000], y[:50_000]),
        "valid": (x[50_000:], y[50_000:]),
        "test": (raw["testing_x"], raw["testing_y"]),
    }
    out = {}
    for name, (xi, yi) in parts.items():
        xi = _to_float(xi, device)
        out[f"{name}_x"] = xi.view(len(xi), -1) if flat else xi
        out[f"{name}_y"] = yi.to(device)
    return out
