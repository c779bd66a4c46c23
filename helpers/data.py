"""MNIST for the lessons, as float tensors on a device: what the notebooks call.

``load_3s_and_7s()`` (lessons 00-03) and ``load_mnist()`` (lesson 04), and ``tensor_loader()``, a
torch ``DataLoader`` over tensors that the lessons use from lesson 01 on. Where the pixels come from,
how they are checked and cached, and how many processes share one data folder safely is the
storage layer's business: ``helpers.storage``. Anything wrong with the data raises ``DataError``,
whose message says what to do. Nothing here prints: progress goes to the ``helpers.data`` logger.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, TensorDataset

from .storage import MNIST, MNIST_SAMPLE, ChecksumError, DataError, load_raw

__all__ = ["ChecksumError", "DataError", "TensorBatches", "load_3s_and_7s", "load_mnist", "tensor_loader"]


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


class TensorBatches(Sampler):
    """Batches of indices in the order `RandomSampler` (shuffle) or `SequentialSampler` would give them
    with the same generator: index tensors when shuffled, `slice`s when not (a slice of a tensor is a
    view of it, so an unshuffled batch costs no copy, like `x[i:i + batch_size]` in a hand-written loop)."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ):
        self.n, self.batch_size, self.shuffle, self.generator, self.drop_last = (
            n,
            batch_size,
            shuffle,
            generator,
            drop_last,
        )

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        stop = len(self) * self.batch_size if self.drop_last else self.n
        if self.shuffle:
            g = self.generator
            if g is None:  # what RandomSampler does without a generator
                g = torch.Generator()
                g.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
            order = torch.randperm(self.n, generator=g)
            torch.randperm(self.n, generator=g)  # RandomSampler draws (and drops) a second one per pass: stay in step
        for i in range(0, stop, self.batch_size):
            yield order[i : i + self.batch_size] if self.shuffle else slice(i, i + self.batch_size)


class _Rows(TensorDataset):
    """A `TensorDataset` that takes a batch of rows, given as an index tensor, with `index_select`:
    on the CPU about twice as fast as `x[index]`, the same rows."""

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            return tuple(t.index_select(0, index.to(t.device)) for t in self.tensors)
        return super().__getitem__(index)


def tensor_loader(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    drop_last: bool = False,
) -> DataLoader:
    """A torch `DataLoader` over tensors that takes each batch with one indexing operation.

    Same batches as `DataLoader(TensorDataset(x, y), batch_size, shuffle)` with the same generator
    (checked by the tests), without fetching and collating items one by one; the tensors stay on
    their device. Unshuffled batches are views of `x` and `y` (change one in place and you change
    the data); shuffled ones are copies.
    """
    ds = _Rows(x, y)
    # DataLoader draws a worker seed from `generator` at the start of each pass, as it does with shuffle=True.
    return DataLoader(
        ds,
        sampler=TensorBatches(len(ds), batch_size, shuffle, generator, drop_last),
        batch_size=None,
        generator=generator,
    )
