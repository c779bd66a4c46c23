"""Checks of the lesson that builds a Learner from scratch: callbacks run in the learner's own `Learner`
(the notebook's, else `helpers.learner.Learner`) on tiny hidden data, against a plain loop."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from . import NotYet, call, check_for, first_mistake, need_callable


def _learner_class(ns: dict):
    cls = ns.get("Learner")
    if cls is None or getattr(cls, "__module__", "").startswith("fastai"):
        from ..learner import Learner as cls  # the lesson's Learner, exported to helpers
    return cls


def fit(ns: dict, model: nn.Module, train: list, valid: list, loss_func, cbs: list, lr: float, n_epoch: int = 1):
    """Train `model` with the learner's `Learner` and `cbs`, quietly, on the CPU."""
    cls = _learner_class(ns)
    kwargs = dict(loss_func=loss_func, opt_func=torch.optim.SGD, lr=lr, cbs=cbs, metrics=[])
    params = inspect.signature(cls).parameters
    if "progress" in params:
        kwargs["progress"] = False
    if "device" in params:
        kwargs["device"] = "cpu"
    learn = call(cls, SimpleNamespace(train=train, valid=valid), model, what="Learner(dls, model, ...)", **kwargs)
    if hasattr(learn, "logger"):
        learn.logger = lambda *a, **k: None
    call(learn.fit, n_epoch, what=f"learn.fit({n_epoch}) with your callback")
    return learn


def _regression(n_batches: int, bs: int, scale: float = 1.0):
    w = torch.tensor([[1.5], [-2.0], [0.5]])
    out = []
    for _ in range(n_batches):
        x = torch.randn(bs, 3)
        out.append((x, (x @ w + 0.1 * torch.randn(bs, 1)) * scale))
    return out


def _model() -> nn.Linear:
    torch.manual_seed(11)
    return nn.Linear(3, 1)


def _plain_loop(batches, lr, step_every=1, scale=1.0, keep=(), zero_each=False, clip=None, per_param=False):
    """A reference loop over `batches`: gradients of each batch's loss x `scale`, a step every
    `step_every` batches (after the positions in `keep` when given), optional clipping."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for i, (x, y) in enumerate(batches):
        (F.mse_loss(model(x), y) * scale).backward()
        due = (i in keep) if keep else ((i + 1) % step_every == 0)
        if due:
            if clip is not None:
                if per_param:
                    for p in model.parameters():
                        torch.nn.utils.clip_grad_norm_([p], clip)
                else:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            opt.zero_grad()
        elif zero_each:
            opt.zero_grad()
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _weights(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------- early stopping
class _ScriptedLoss:
    """A loss whose validation value in epoch k is `valid[k]` (training: a constant 1)."""

    def __init__(self, valid: list[float]):
        self.valid, self.epochs = valid, 0

    def __call__(self, pred, y):
        zero = (pred * 0).sum()
        if torch.is_grad_enabled():
            return zero + 1.0
        self.epochs += 1
        return zero + self.valid[min(self.epochs - 1, len(self.valid) - 1)]


# validation losses per epoch; with patience 2 training stops after epoch 5 (best 0.9 in epoch 3)
_SCRIPT = [1.0, 1.1, 0.9, 0.95, 0.93, 0.96, 0.97, 0.98, 0.99, 1.0]
_EPOCHS_RUN = {
    5: None,
    2: "it stopped at the first epoch without improvement: wait `patience` epochs without one.",
    3: "it stopped while the validation loss was still improving now and then: compare the validation loss "
    "(recorder.values[-1][1]), not the training loss.",
    4: "it stopped one epoch early: after an improvement, start counting from zero again.",
    6: "it stopped one epoch late: stop when the count of epochs without improvement reaches `patience`.",
    7: "it compares with the previous epoch: compare with the best validation loss so far.",
    10: "it never stopped: raise CancelFitException when `patience` epochs have passed without improvement.",
}


@check_for("early_stopping", "EarlyStopping")
def _early_stopping(ns: dict) -> str:
    cls = need_callable(ns, "EarlyStopping")
    loss = _ScriptedLoss(_SCRIPT)
    cb = call(cls, 2, what="EarlyStopping(2)")
    batches = _regression(2, 4)
    fit(ns, _model(), batches, batches[:1], loss, [cb], lr=0.0, n_epoch=len(_SCRIPT))
    ran = loss.epochs
    if ran == 5:
        return "with patience 2 it stopped two epochs after the best validation loss."
    hint = _EPOCHS_RUN.get(ran)
    raise NotYet(
        (hint or "it stopped at another epoch.")
        + f" (Validation losses {_SCRIPT[:6]}..., patience 2: expected 5 epochs, it ran {ran}.)"
    )


# ---------------------------------------------------------------------------- gradient accumulation
@check_for("gradient_accumulation", "GradientAccumulation")
def _grad_acc(ns: dict) -> str:
    cls = need_callable(ns, "GradientAccumulation")
    small = _regression(8, 4)
    big = [(torch.cat([a[0], b[0]]), torch.cat([a[1], b[1]])) for a, b in zip(small[::2], small[1::2])]
    expected = _plain_loop(big, lr=0.1)
    model = _model()
    fit(ns, model, small, small[:1], F.mse_loss, [call(cls, 2, what="GradientAccumulation(2)")], lr=0.1)
    got = _weights(model)
    if _same(got, expected):
        return "8 batches of 4 with n_acc=2 train exactly like 4 batches of 8."
    mistakes = {
        "you add the losses without dividing each by n_acc: the steps are n_acc times too large.": _plain_loop(
            small, 0.1, step_every=2
        ),
        "it steps on the wrong batches: step after the n_acc-th batch of each group (batches 2, 4, ...), "
        "not after the first.": _plain_loop(small, 0.1, scale=0.5, keep=(0, 2, 4, 6)),
        "the gradients are zeroed after every batch, so only the last batch of each group counts: skip "
        "zero_grad too while accumulating (raise CancelBatchException in before_step).": _plain_loop(
            small, 0.1, step_every=2, scale=0.5, zero_each=True
        ),
        "it steps after every batch: skip the step until n_acc batches have been seen.": _plain_loop(small, 0.1),
    }
    if hint := first_mistake(got, mistakes, _same):
        raise NotYet(hint)
    if _same(got, _weights(_model())):
        raise NotYet("the weights never changed: the optimizer must step every n_acc batches.")
    raise NotYet("after 8 batches of 4 with n_acc=2 the weights differ from 4 batches of 8.")


# --------------------------------------------------------------------------------- gradient clipping
@check_for("clip_grad", "ClipGrad")
def _clip_grad(ns: dict) -> str:
    cls = need_callable(ns, "ClipGrad")
    batches = _regression(3, 8, scale=20.0)  # large gradients, so that clipping matters
    expected = _plain_loop(batches, 0.05, clip=0.5)
    model = _model()
    fit(ns, model, batches, batches[:1], F.mse_loss, [call(cls, 0.5, what="ClipGrad(0.5)")], lr=0.05)
    got = _weights(model)
    if _same(got, expected):
        return "the gradients' total norm is clipped to max_norm before every step."
    mistakes = {
        "you clip each parameter's gradient on its own: clip the norm of all of them together "
        "(torch.nn.utils.clip_grad_norm_(params, max_norm)).": _plain_loop(batches, 0.05, clip=0.5, per_param=True),
        "the steps are not clipped: clip in before_step, before the optimizer steps (after_step is too late).": (
            _plain_loop(batches, 0.05)
        ),
    }
    if hint := first_mistake(got, mistakes, _same):
        raise NotYet(hint)
    raise NotYet("the weights differ from steps with the gradients' total norm clipped to max_norm.")
