"""What lesson 06 builds: SGD with momentum, RMSProp and Adam, with weight decay both ways.

Each optimizer is its `update`: how one parameter moves, given its gradient, what it remembers
(`state`) and its group's hyper-parameters (`group`). The names of the hyper-parameters are
fastai's (`mom`, `sqr_mom`, `eps`, `wd`, `decouple_wd`), and so are the defaults: the tests check
every step against `torch.optim` and fastai's optimizers with the same settings.
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
from torch import Tensor, nn

__all__ = ["Optimizer", "SGD", "RMSProp", "Adam", "decay", "wd_groups"]


class Optimizer:
    """Parameter groups (dicts of "params" and hyper-parameters) and a state per parameter, as
    `torch.optim` keeps them, with its `step`, `zero_grad` and `state_dict` interface. A
    subclass says how one parameter moves by defining `update(p, grad, state, group)`."""

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], defaults: dict[str, Any]):
        params = list(params)
        groups = params if params and isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = [{**defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: dict[Tensor, dict[str, Any]] = {}

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, p.grad, self.state.setdefault(p, {}), group)

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError(
            f"{type(self).__name__} must define update(p, grad, state, group): how one parameter moves"
        )

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def state_dict(self) -> dict[str, Any]:
        """A copy of the hyper-parameters and of every parameter's state (by position)."""
        params = [p for g in self.param_groups for p in g["params"]]
        return {
            "state": {i: copy.deepcopy(self.state[p]) for i, p in enumerate(params) if p in self.state},
            "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups],
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Put back what `state_dict` copied (same parameters, same order)."""
        for group, saved in zip(self.param_groups, sd["param_groups"], strict=True):
            group.update(saved)
        params = [p for g in self.param_groups for p in g["params"]]
        self.state = {params[i]: copy.deepcopy(s) for i, s in sd["state"].items()}


def decay(p: Tensor, grad: Tensor, group: dict[str, Any]) -> Tensor:
    """Weight decay, either way. Decoupled (`decouple_wd=True`: fastai's default, AdamW) shrinks the
    parameter itself by a factor `1 - lr * wd`; L2 adds `wd * p` to the gradient, which is what
    adding `wd/2 * sum(p**2)` to the loss would do. Returns the gradient to use."""
    wd = group["wd"]
    if wd == 0:
        return grad
    if group["decouple_wd"]:
        p.mul_(1 - group["lr"] * wd)
        return grad
    return grad.add(p, alpha=wd)


class SGD(Optimizer):
    """SGD; with `mom > 0` it keeps `grad_avg = mom * grad_avg + grad` and steps along it
    (torch's `SGD(momentum=mom)` without dampening)."""

    def __init__(self, params, lr: float, mom: float = 0.0, wd: float = 0.0, decouple_wd: bool = True):
        super().__init__(params, dict(lr=lr, mom=mom, wd=wd, decouple_wd=decouple_wd))

    def update(self, p, grad, state, group):
        grad = decay(p, grad, group)
        if group["mom"]:
            grad = state.setdefault("grad_avg", torch.zeros_like(p)).mul_(group["mom"]).add_(grad)
        p.add_(grad, alpha=-group["lr"])


class RMSProp(Optimizer):
    """Divides each step by the root of a moving average of squared gradients
    (`sqr_mom` is torch's `alpha`): each parameter's steps are scaled to its usual gradient size."""

    def __init__(
        self, params, lr: float, sqr_mom: float = 0.99, eps: float = 1e-8, wd: float = 0.0, decouple_wd: bool = True
    ):
        super().__init__(params, dict(lr=lr, sqr_mom=sqr_mom, eps=eps, wd=wd, decouple_wd=decouple_wd))

    def update(self, p, grad, state, group):
        grad = decay(p, grad, group)
        sqr_avg = state.setdefault("sqr_avg", torch.zeros_like(p))
        sqr_avg.mul_(group["sqr_mom"]).addcmul_(grad, grad, value=1 - group["sqr_mom"])
        p.addcdiv_(grad, sqr_avg.sqrt().add_(group["eps"]), value=-group["lr"])


class Adam(Optimizer):
    """Momentum (a moving average of gradients, weight `mom`) divided by RMSProp's root mean
    square, both corrected for starting at zero. fastai's defaults: `eps=1e-5`, `sqr_mom=0.99`
    and decoupled weight decay 0.01 (AdamW)."""

    def __init__(
        self,
        params,
        lr: float,
        mom: float = 0.9,
        sqr_mom: float = 0.99,
        eps: float = 1e-5,
        wd: float = 0.01,
        decouple_wd: bool = True,
    ):
        super().__init__(params, dict(lr=lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd, decouple_wd=decouple_wd))

    def update(self, p, grad, state, group):
        grad = decay(p, grad, group)
        if not state:
            state.update(step=0, grad_avg=torch.zeros_like(p), sqr_avg=torch.zeros_like(p))
        mom, sqr_mom = group["mom"], group["sqr_mom"]
        state["step"] += 1
        state["grad_avg"].mul_(mom).add_(grad, alpha=1 - mom)
        state["sqr_avg"].mul_(sqr_mom).addcmul_(grad, grad, value=1 - sqr_mom)
        debias1, debias2 = 1 - mom ** state["step"], 1 - sqr_mom ** state["step"]
        p.addcdiv_(state["grad_avg"], (state["sqr_avg"] / debias2).sqrt() + group["eps"], value=-group["lr"] / debias1)


NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def wd_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Two parameter groups, the second with `wd=0`: biases and normalisation layers' parameters,
    which fastai leaves out of weight decay by default (`Learner(wd_bn_bias=False)`)."""
    no_wd = {
        id(p)
        for m in model.modules()
        for name, p in m.named_parameters(recurse=False)
        if isinstance(m, NORM_LAYERS) or name == "bias"
    }
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) not in no_wd]},
        {"params": [p for p in params if id(p) in no_wd], "wd": 0.0},
    ]
