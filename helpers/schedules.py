"""What lesson 06 builds: fastai's learning-rate finder and one-cycle policy, as callbacks of
`helpers.learner.Learner`. The tests check them against fastai's `lr_find` and `fit_one_cycle`."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

from .learner import Callback, CancelFitException, CancelValidException, Learner

__all__ = [
    "sched_cos",
    "sched_exp",
    "combined_cos",
    "set_hyper",
    "OneCycle",
    "fit_one_cycle",
    "LRFinder",
    "LRFindResult",
    "valley",
    "lr_find",
]


def sched_cos(start: float, end: float, pos: float) -> float:
    """From `start` (pos 0) to `end` (pos 1) along half a cosine: slow, fast, slow."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def sched_exp(start: float, end: float, pos: float) -> float:
    """From `start` to `end` by a constant factor per step: a straight line on a log scale."""
    return start * (end / start) ** pos


def combined_cos(pct: float, start: float, middle: float, end: float) -> Callable[[float], float]:
    """Cosine from `start` to `middle` over the first `pct` of training, then to `end`."""

    def schedule(pos: float) -> float:
        if pos < pct:
            return sched_cos(start, middle, pos / pct)
        return sched_cos(middle, end, (pos - pct) / (1 - pct))

    return schedule


def set_hyper(opt: Any, name: str, value: float) -> None:
    """Set `lr` or `mom` in every parameter group; momentum also as torch's `momentum` or the
    first of `betas`, so that torch's optimizers follow a schedule too."""
    for g in opt.param_groups:
        if name == "mom" and "mom" not in g:
            if "betas" in g:
                g["betas"] = (value, *g["betas"][1:])
            elif "momentum" in g:
                g["momentum"] = value
            continue
        g[name] = value


def _hyper(opt: Any, name: str) -> float:
    g = opt.param_groups[-1]
    if name == "mom" and "mom" not in g:
        return g["betas"][0] if "betas" in g else g.get("momentum", 0.0)
    return g[name]


class OneCycle(Callback):
    """The one-cycle policy: the learning rate warms up from `lr_max/div` to `lr_max` over the first
    `pct_start` of training and anneals to `lr_max/div_final`, both along cosines; the momentum
    does the opposite, `moms[0]` -> `moms[1]` -> `moms[2]`. fastai's defaults. The values used at
    every batch are kept in `hps` (and, after the fit, in `learn.recorder.hps`)."""

    order = 60

    def __init__(
        self,
        lr_max: float,
        div: float = 25.0,
        div_final: float = 1e5,
        pct_start: float = 0.25,
        moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
    ):
        self.lr = combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final)
        self.mom = combined_cos(pct_start, *moms)

    def before_fit(self) -> None:
        self.total = self.learn.n_epoch * len(self.learn.dls.train)
        self.hps: dict[str, list[float]] = {"lr": [], "mom": []}

    def before_batch(self) -> None:
        if self.learn.training:
            pos = self.learn.train_iter / self.total
            set_hyper(self.learn.opt, "lr", self.lr(pos))
            set_hyper(self.learn.opt, "mom", self.mom(pos))

    def after_batch(self) -> None:
        if self.learn.training:
            for name in self.hps:
                self.hps[name].append(_hyper(self.learn.opt, name))

    def after_fit(self) -> None:
        if hasattr(self.learn, "recorder"):
            self.learn.recorder.hps = self.hps


def fit_one_cycle(learn: Learner, n_epoch: int, lr_max: float, **kwargs) -> None:
    """`learn.fit(n_epoch)` under the one-cycle policy (keyword arguments: see `OneCycle`)."""
    learn.fit(n_epoch, cbs=[OneCycle(lr_max, **kwargs)])


class LRFinder(Callback):
    """Trains with a learning rate that grows exponentially from `start_lr` to `end_lr` over `num_it`
    batches, recording the recorder's smoothed loss; stops early once that loss exceeds four
    times its best (`stop_div`), skips validation, and puts the weights and the optimizer's
    state back as they were at the end."""

    order = 60

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True):
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div

    def before_fit(self) -> None:
        self.saved = copy.deepcopy(self.learn.model.state_dict()), copy.deepcopy(self.learn.opt.state_dict())
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.best = math.inf

    def before_batch(self) -> None:
        if self.learn.training:
            set_hyper(self.learn.opt, "lr", sched_exp(self.start_lr, self.end_lr, self.learn.train_iter / self.num_it))

    def after_batch(self) -> None:
        if not self.learn.training:
            return
        loss = self.learn.recorder.smooth_loss
        self.lrs.append(_hyper(self.learn.opt, "lr"))
        self.losses.append(loss)
        self.best = min(self.best, loss)
        if (self.stop_div and loss > 4 * self.best) or self.learn.train_iter >= self.num_it:
            raise CancelFitException

    def before_validate(self) -> None:
        raise CancelValidException

    def after_fit(self) -> None:
        self.learn.opt.zero_grad()
        model_state, opt_state = self.saved
        self.learn.model.load_state_dict(model_state)
        self.learn.opt.load_state_dict(opt_state)


def valley(lrs: list[float], losses: list[float]) -> int:
    """fastai's suggestion: the index in the middle of the longest valley, the longest run of
    points over which the loss keeps falling (a longest decreasing subsequence), rounded as
    fastai rounds it: start + int(length/3) + int(length/6)."""
    n = len(losses)
    lds, max_start, max_end = [1] * n, 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


@dataclass
class LRFindResult:
    """What `lr_find` saw: learning rates, smoothed losses, and the suggestion and its index in them."""

    lrs: list[float]
    losses: list[float]
    valley: float
    index: int


def lr_find(
    learn: Learner, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True
) -> LRFindResult:
    """Run `LRFinder` and suggest a learning rate by `valley`, looking (as fastai does) past the
    first tenth of the sweep and before its last five points."""
    finder = LRFinder(start_lr, end_lr, num_it, stop_div)
    logger, learn.logger = learn.logger, (lambda row: None)
    try:
        learn.fit(num_it // len(learn.dls.train) + 1, cbs=[finder])
    finally:
        learn.logger = logger
    first = num_it // 10
    lrs, losses = finder.lrs[first:-5], finder.losses[first:-5]
    if any(math.isnan(v) for v in losses):
        cut = next(i for i, v in enumerate(losses) if math.isnan(v))
        lrs, losses = lrs[:cut], losses[:cut]
    i = valley(lrs, losses)
    return LRFindResult(finder.lrs, finder.losses, lrs[i], first + i)
