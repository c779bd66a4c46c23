"""What lessons 00-03 build by hand, in one place: the baseline, the loss, the metric, the loops.

Each lesson writes these itself to teach them; `tests/test_lessons_agree.py` proves that the
lesson's version and the one here give the same results on the same inputs.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Sampler, TensorDataset

__all__ = [
    "mnist_distance",
    "is_3",
    "init_params",
    "check_same_shape",
    "mnist_loss",
    "batch_accuracy",
    "calc_grad",
    "train_epoch",
    "validate_epoch",
    "BasicOptim",
    "train_model",
    "TensorBatches",
    "tensor_loader",
    "stack_3s_and_7s",
]


# ----------------------------------------------------------------------------- lesson 00: the baseline
def mnist_distance(a: Tensor, b: Tensor) -> Tensor:
    """Mean absolute pixel difference (L1) over the last two axes; broadcasts a batch against one image."""
    return (a - b).abs().mean((-1, -2))


def is_3(x: Tensor, mean3: Tensor, mean7: Tensor) -> Tensor:
    """True where an image is closer (L1) to the ideal 3 than to the ideal 7."""
    return mnist_distance(x, mean3) < mnist_distance(x, mean7)


# ----------------------------------------------------------------------------- lesson 01: a linear model by hand
def init_params(size: int | tuple[int, ...], std: float = 1.0, device: torch.device | str | None = None) -> Tensor:
    """Random normal parameters that record their gradient. Drawn on the CPU, then moved, so that
    the same seed gives the same starting point on every device."""
    return (torch.randn(size) * std).to(device).requires_grad_()


def stack_3s_and_7s(threes: Tensor, sevens: Tensor) -> tuple[Tensor, Tensor]:
    """Images [n,28,28] of 3s and 7s as rows of 784 pixels, with a column of targets (1 for a 3, 0 for a 7)."""
    x = torch.cat([threes, sevens]).view(-1, 28 * 28)
    y = torch.cat([torch.ones(len(threes)), torch.zeros(len(sevens))]).unsqueeze(1).to(x.device)
    return x, y


def check_same_shape(predictions: Tensor, targets: Tensor) -> None:
    """Refuse the silent broadcast: predictions [N,1] against targets [N] would compare every pair, [N,N]."""
    if predictions.shape == targets.shape:
        return
    msg = f"predictions have shape {tuple(predictions.shape)} but targets have shape {tuple(targets.shape)}"
    try:
        both = tuple(torch.broadcast_shapes(predictions.shape, targets.shape))
    except RuntimeError:
        raise ValueError(f"{msg}: make them the same shape.") from None
    raise ValueError(
        f"{msg}: they would broadcast to {both} and give a wrong result without any error. "
        "Make them the same shape, e.g. targets.view(-1, 1) or predictions.view(-1)."
    )


def mnist_loss(predictions: Tensor, targets: Tensor) -> Tensor:
    """How far the sigmoid of each prediction is from its target (1 for a 3, 0 for a 7), averaged."""
    check_same_shape(predictions, targets)
    predictions = predictions.sigmoid()
    return torch.where(targets == 1, 1 - predictions, predictions).mean()


def batch_accuracy(predictions: Tensor, targets: Tensor) -> Tensor:
    """Share of predictions on the right side of 0.5 after the sigmoid."""
    check_same_shape(predictions, targets)
    correct = (predictions.sigmoid() > 0.5) == targets.bool()
    return correct.float().mean()


def calc_grad(xb: Tensor, yb: Tensor, model: Callable[[Tensor], Tensor], loss_func=mnist_loss) -> Tensor:
    """Forward, loss, backward: the gradients of every parameter are *added to* their `.grad`."""
    loss = loss_func(model(xb), yb)
    loss.backward()
    return loss


def train_epoch(
    model: Callable[[Tensor], Tensor], dl: Iterable, lr: float, params: Iterable[Tensor], loss_func=mnist_loss
) -> None:
    """One pass over `dl`: for each batch, compute the gradients, step against them, reset them."""
    params = list(params)
    for xb, yb in dl:
        calc_grad(xb, yb, model, loss_func)
        with torch.no_grad():
            for p in params:
                p -= p.grad * lr
                p.grad.zero_()


@torch.no_grad()
def validate_epoch(model: Callable[[Tensor], Tensor], dl: Iterable, metric=batch_accuracy) -> float:
    """The metric over a whole dataset, rounded to 4 places. Batches are weighted by their size,
    so a short last batch counts as much as its items, not as much as a full batch."""
    total, n = 0.0, 0
    for xb, yb in dl:
        total += metric(model(xb), yb).item() * len(xb)
        n += len(xb)
    return round(total / n, 4)


# ----------------------------------------------------------------------------- lesson 02: an optimizer
class BasicOptim:
    """Plain SGD with the `step`/`zero_grad` interface of `torch.optim` optimizers."""

    def __init__(self, params: Iterable[Tensor], lr: float):
        self.params, self.lr = list(params), lr

    @torch.no_grad()
    def step(self) -> None:
        for p in self.params:
            p -= p.grad * self.lr

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


def train_model(
    model: torch.nn.Module | Callable[[Tensor], Tensor], epochs: int, dl: Iterable, valid_dl: Iterable, opt
) -> list[float]:
    """Train for `epochs` passes over `dl` with any optimizer (lesson 02); return the validation
    accuracy after each."""
    history = []
    for _ in range(epochs):
        for xb, yb in dl:
            calc_grad(xb, yb, model)
            opt.step()
            opt.zero_grad()
        history.append(validate_epoch(model, valid_dl))
    return history


# ----------------------------------------------------------------------------- batches
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
