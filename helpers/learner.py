"""What lesson 05 builds: a `Learner` whose training loop calls callbacks at fastai's events.

The loop is lesson 02's (predict, loss, backward, step, zero the gradients) with a named event
before and after each part. Everything else (switching train/eval mode, recording losses and
metrics, the progress bar, schedules, stopping early) is a `Callback` that does its part at
some of those events. Raising one of the `Cancel...Exception`s skips the rest of a batch, an
epoch or the whole fit, the way fastai does it. `tests/test_learner.py` checks that it trains
exactly like fastai's `Learner` on the same batches.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from .core import get_device

__all__ = [
    "EVENTS",
    "Callback",
    "TrainEvalCallback",
    "Recorder",
    "ProgressCallback",
    "DataLoaders",
    "Learner",
    "CancelFitException",
    "CancelEpochException",
    "CancelTrainException",
    "CancelValidException",
    "CancelBatchException",
    "CancelBackwardException",
    "CancelStepException",
]

# The events in the order a training batch meets them (fastai's names).
EVENTS = (
    "before_fit before_epoch before_train before_batch after_pred after_loss before_backward "
    "after_cancel_backward after_backward before_step after_cancel_step after_step after_cancel_batch "
    "after_batch after_cancel_train after_train before_validate after_cancel_validate after_validate "
    "after_cancel_epoch after_epoch after_cancel_fit after_fit"
).split()


class CancelFitException(Exception):
    """Stop training: skip to `after_cancel_fit`, then `after_fit`."""


class CancelEpochException(Exception):
    """Skip the rest of this epoch (training and validation): go to `after_epoch`."""


class CancelTrainException(Exception):
    """Skip the rest of this epoch's training: go to `after_train`, then validate."""


class CancelValidException(Exception):
    """Skip this epoch's validation: go to `after_validate`."""


class CancelBatchException(Exception):
    """Skip the rest of this batch: go to `after_batch`."""


class CancelBackwardException(Exception):
    """Skip the backward pass of this batch: go to `after_backward`."""


class CancelStepException(Exception):
    """Skip this batch's optimizer step: go to `after_step`."""


class Callback:
    """A piece of the training loop: it handles an event by having a method of that name.

    `order` sets who goes first at the same event (lower first). The learner sets `self.learn`
    when the callback is added, so a method reads and changes the learner's state through it.
    """

    order: int = 0
    learn: "Learner"


class TrainEvalCallback(Callback):
    """The learner's own bookkeeping: train/eval mode and the count of training batches done."""

    order = -10

    def before_fit(self) -> None:
        self.learn.train_iter, self.learn.epoch = 0, 0

    def before_train(self) -> None:
        self.learn.model.train()
        self.learn.training = True

    def before_validate(self) -> None:
        self.learn.model.eval()
        self.learn.training = False

    def after_batch(self) -> None:
        if self.learn.training:
            self.learn.train_iter += 1


class Recorder(Callback):
    """Records every training batch's loss and learning rate, and after each epoch the training
    loss, the validation loss and the metrics (each averaged over the validation set).

    `losses` are the raw batch losses; `smooth_losses` the exponentially weighted average with
    weight `beta` on the past, divided by `1 - beta**n` so that it does not start near zero
    (fastai's train_loss is the last of these)."""

    order = 50

    def __init__(self, beta: float = 0.98):
        self.beta = beta

    def before_fit(self) -> None:
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.smooth_losses: list[float] = []
        self.values: list[list[float]] = []
        self._avg, self._count = 0.0, 0
        self.names = ["epoch", "train_loss", "valid_loss", *(_name(m) for m in self.learn.metrics), "time"]

    def before_epoch(self) -> None:
        self._start = time.perf_counter()

    def before_validate(self) -> None:
        self._sums, self._n = [0.0] * (1 + len(self.learn.metrics)), 0

    def after_batch(self) -> None:
        learn = self.learn
        if learn.loss is None:  # the batch was cancelled before its loss
            return
        if learn.training:
            loss = learn.loss.item()
            self._count += 1
            self._avg = self.beta * self._avg + (1 - self.beta) * loss
            self.losses.append(loss)
            self.smooth_losses.append(self._avg / (1 - self.beta**self._count))
            self.lrs.append(learn.opt.param_groups[-1]["lr"])
        else:
            bs = len(learn.yb)
            values = [learn.loss] + [m(learn.pred, learn.yb) for m in learn.metrics]
            self._sums = [s + float(v) * bs for s, v in zip(self._sums, values)]
            self._n += bs

    @property
    def smooth_loss(self) -> float:
        """The current smoothed training loss (infinite before the first batch)."""
        return self.smooth_losses[-1] if self.smooth_losses else float("inf")

    def after_epoch(self) -> None:
        valid = [s / self._n for s in self._sums] if getattr(self, "_n", 0) else []
        self.values.append([self.smooth_loss, *valid])
        self.learn.logger([self.learn.epoch, *self.values[-1], _fmt_time(time.perf_counter() - self._start)])


class ProgressCallback(Callback):
    """fastprogress bars, as fastai shows them: one over the epochs, one over each pass's
    batches, and a table of each epoch's figures instead of printed lines."""

    order = 60

    def before_fit(self) -> None:
        from fastprogress.fastprogress import master_bar

        self.mbar = master_bar(range(self.learn.n_epoch))
        self._logger, self.learn.logger = self.learn.logger, self._write
        if hasattr(self.learn, "recorder"):
            self._write(self.learn.recorder.names)

    def before_epoch(self) -> None:
        self.mbar.update(self.learn.epoch)

    def _launch(self) -> None:
        from fastprogress.fastprogress import progress_bar

        self.pbar = progress_bar(self.learn.dl, parent=self.mbar, leave=False)
        self.pbar.update(0)

    before_train = before_validate = _launch

    def after_batch(self) -> None:
        self.pbar.update(self.learn.iter + 1)

    def after_train(self) -> None:
        self.pbar.on_iter_end()

    after_validate = after_train

    def after_fit(self) -> None:
        self.mbar.on_iter_end()
        self.learn.logger = self._logger

    def _write(self, row: Sequence) -> None:
        self.mbar.write([f"{v:.6f}" if isinstance(v, float) else str(v) for v in row], table=True)


@dataclass
class DataLoaders:
    """A training and a validation loader, under the names fastai uses."""

    train: Iterable
    valid: Iterable


def trainable_params(model: nn.Module) -> list[Tensor]:
    """The parameters an optimizer should update: those that record a gradient."""
    return [p for p in model.parameters() if p.requires_grad]


class Learner:
    """Model, data, loss and optimizer together, and a training loop that calls callbacks.

    `opt_func(params, lr=lr)` makes the optimizer (once, at the first `fit`); `splitter(model)`
    gives the parameters, or parameter groups, it updates. `metrics` are functions of
    (predictions, targets), averaged over the validation set. The model and every batch are put
    on `device` (default: the best one here). `progress=False` prints each epoch's figures
    instead of showing progress bars.
    """

    def __init__(
        self,
        dls: Any,
        model: nn.Module,
        loss_func: Callable[[Tensor, Tensor], Tensor],
        opt_func: Callable[..., Any] = torch.optim.SGD,
        lr: float = 1e-2,
        cbs: Iterable[Callback] = (),
        metrics: Sequence[Callable] = (),
        splitter: Callable[[nn.Module], Iterable] = trainable_params,
        device: torch.device | str | None = None,
        progress: bool = True,
    ):
        self.dls, self.model, self.loss_func, self.opt_func, self.lr = dls, model, loss_func, opt_func, lr
        self.metrics, self.splitter = list(metrics), splitter
        self.device = torch.device(device) if device is not None else get_device()
        self.opt, self.training, self.logger = None, False, print
        self.cbs: list[Callback] = []
        defaults: list[Callback] = [TrainEvalCallback(), Recorder()] + ([ProgressCallback()] if progress else [])
        self.add_cbs(defaults + list(cbs))

    # ------------------------------------------------------------------ callbacks
    def add_cbs(self, cbs: Iterable[Callback]) -> None:
        """Add callbacks; each is also reachable as an attribute named after its class
        (`Recorder` as `learn.recorder`, `OneCycle` as `learn.one_cycle`)."""
        for cb in cbs:
            cb.learn = self
            self.cbs.append(cb)
            setattr(self, _attr_name(cb), cb)

    def remove_cbs(self, cbs: Iterable[Callback]) -> None:
        for cb in cbs:
            self.cbs.remove(cb)
            if getattr(self, _attr_name(cb), None) is cb:
                delattr(self, _attr_name(cb))

    def __call__(self, event: str) -> None:
        """Run every callback's handler of `event`, in `order`."""
        for handler in self._handlers[event]:
            handler()

    def _with_events(self, f: Callable[[], None], name: str, cancel: type[Exception]) -> None:
        """before_NAME, f(), after_NAME; a `cancel` exception raised in the first two goes to
        after_cancel_NAME and then after_NAME."""
        try:
            self(f"before_{name}")
            f()
        except cancel:
            self(f"after_cancel_{name}")
        self(f"after_{name}")

    # ------------------------------------------------------------------ the loop
    def create_opt(self) -> None:
        self.opt = self.opt_func(self.splitter(self.model), lr=self.lr)

    def _backward(self) -> None:
        self.loss.backward()

    def _step(self) -> None:
        self.opt.step()

    def _do_one_batch(self) -> None:
        self.pred = self.model(self.xb)
        self("after_pred")
        self.loss = self.loss_func(self.pred, self.yb)
        self("after_loss")
        if not self.training:
            return
        self._with_events(self._backward, "backward", CancelBackwardException)
        self._with_events(self._step, "step", CancelStepException)
        self.opt.zero_grad()

    def _all_batches(self) -> None:
        self.n_iter = len(self.dl)
        for self.iter, (xb, yb) in enumerate(self.dl):
            self.xb, self.yb = xb.to(self.device), yb.to(self.device)
            self.pred = self.loss = None  # until this batch computes them
            self._with_events(self._do_one_batch, "batch", CancelBatchException)

    def _do_epoch(self) -> None:
        self.dl = self.dls.train
        self._with_events(self._all_batches, "train", CancelTrainException)
        self.dl = self.dls.valid
        with torch.no_grad():
            self._with_events(self._all_batches, "validate", CancelValidException)

    def _do_fit(self) -> None:
        for self.epoch in range(self.n_epoch):
            self._with_events(self._do_epoch, "epoch", CancelEpochException)

    def fit(self, n_epoch: int, lr: float | None = None, cbs: Iterable[Callback] = ()) -> None:
        """Train for `n_epoch` epochs (at `lr` if given), with `cbs` added for this fit only."""
        cbs = list(cbs)
        self.add_cbs(cbs)
        try:
            self.model.to(self.device)
            if self.opt is None:
                self.create_opt()
            if lr is not None:
                for group in self.opt.param_groups:
                    group["lr"] = lr
            self.n_epoch = n_epoch
            ordered = sorted(self.cbs, key=lambda cb: cb.order)
            self._handlers = {e: [getattr(cb, e) for cb in ordered if hasattr(cb, e)] for e in EVENTS}
            self._with_events(self._do_fit, "fit", CancelFitException)
        finally:
            self.remove_cbs(cbs)


def _attr_name(cb: Callback) -> str:
    """`OneCycle` -> `one_cycle`, `Recorder` -> `recorder`; a trailing `Callback` is dropped."""
    name = type(cb).__name__.removesuffix("Callback") or "callback"
    return "".join("_" + c.lower() if c.isupper() and i else c.lower() for i, c in enumerate(name))


def _name(metric: Callable) -> str:
    return getattr(metric, "__name__", type(metric).__name__)


def _fmt_time(seconds: float) -> str:
    """mm:ss, as fastai prints an epoch's time."""
    return f"{int(seconds) // 60:02d}:{int(seconds) % 60:02d}"
