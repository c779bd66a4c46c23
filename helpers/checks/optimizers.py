"""Checks of the optimizers lesson: each optimizer the learner writes steps on hidden parameters and
gradients, step for step against `torch.optim` (and fastai's form of RMSProp), and against the
known mistakes."""

from __future__ import annotations

import torch

from . import NotYet, call, check_for, need, need_callable
from .basics import _hidden_params, compare_traces, optimizer_trace
from .basics import hand_trace as _trace

# -------------------------------------------------------------------------------------------- Adam
LR, MOM, SQR_MOM, EPS, WD = 1e-2, 0.9, 0.99, 1e-5, 0.01


def _adam(bias_correction: bool = True, wd: str = "decoupled"):
    def update(p, g, st, step):
        if wd == "decoupled":
            p.mul_(1 - LR * WD)
        elif wd == "l2":
            g = g + WD * p
        st["m"] = MOM * st.get("m", torch.zeros_like(p)) + (1 - MOM) * g
        st["v"] = SQR_MOM * st.get("v", torch.zeros_like(p)) + (1 - SQR_MOM) * g * g
        m, v = st["m"], st["v"]
        if bias_correction:
            m, v = m / (1 - MOM**step), v / (1 - SQR_MOM**step)
        p.sub_(LR * m / (v.sqrt() + EPS))

    return update


@check_for("fixed_adam", "FixedAdam")
def _fixed_adam(ns: dict) -> str:
    cls = need_callable(ns, "FixedAdam")
    params, grads = _hidden_params(5)
    got = call(optimizer_trace, lambda ps: cls(ps, lr=LR), params, grads, what="FixedAdam(params, lr=1e-2)")
    expected = optimizer_trace(
        lambda ps: torch.optim.AdamW(ps, lr=LR, betas=(MOM, SQR_MOM), eps=EPS, weight_decay=WD), params, grads
    )
    compare_traces(
        got,
        expected,
        {
            "the bias correction is still missing: divide the averages by 1 - mom**step and "
            "1 - sqr_mom**step (step counted from 1) before the step.": _trace(params, grads, _adam(False)),
            "the bias correction and the weight decay are both missing (that is BuggyAdam).": _trace(
                params, grads, _adam(False, wd="none")
            ),
            "the weight decay is missing: multiply each parameter by 1 - lr * wd at every step.": _trace(
                params, grads, _adam(wd="none")
            ),
            "that is L2 regularisation (wd * p added to the gradient, so Adam rescales it): decouple it, "
            "p *= 1 - lr * wd, apart from the gradient.": _trace(params, grads, _adam(wd="l2")),
        },
        "FixedAdam",
    )
    return "five steps equal to torch.optim.AdamW(betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)."


# ----------------------------------------------------------------------------------------- RMSProp
R_LR, R_EPS = 1e-2, 1e-8


def _rms_fastai(dampen: bool = False, root: bool = True):
    """fastai's RMSProp with momentum: a momentum of the raw gradients, divided by the current RMS.
    (Dampening the momentum by 1 - mom and summing the squares without 1 - sqr_mom shrink every
    step by the same factor, 10: one variant stands for both.)"""

    def update(p, g, st, step):
        avg = st.get("avg", torch.zeros_like(p))
        st["avg"] = MOM * avg + ((1 - MOM) * g if dampen else g)
        sq = st.get("sq", torch.zeros_like(p))
        st["sq"] = SQR_MOM * sq + (1 - SQR_MOM) * g * g
        p.sub_(R_LR * st["avg"] / ((st["sq"].sqrt() if root else st["sq"]) + R_EPS))

    return update


@check_for("rmsprop_forms", "RMSPropMom", "rmsprop_follows")
def _rmsprop(ns: dict) -> str:
    cls = need_callable(ns, "RMSPropMom")
    follows = need(ns, "rmsprop_follows")
    params, grads = _hidden_params(5)
    got = call(
        optimizer_trace,
        lambda ps: cls(ps, lr=R_LR, mom=MOM, sqr_mom=SQR_MOM, eps=R_EPS),
        params,
        grads,
        what="RMSPropMom(params, lr=1e-2, mom=0.9, sqr_mom=0.99, eps=1e-8)",
    )
    forms = {
        "torch": optimizer_trace(
            lambda ps: torch.optim.RMSprop(ps, lr=R_LR, alpha=SQR_MOM, eps=R_EPS, momentum=MOM), params, grads
        ),
        "fastai": _trace(params, grads, _rms_fastai()),
    }

    def same(a, b):
        return all(torch.allclose(x, y, rtol=1e-5, atol=1e-6) for xs, ys in zip(a, b) for x, y in zip(xs, ys))

    matched = next((name for name, trace in forms.items() if same(got, trace)), None)
    if matched is None:
        mistakes = {
            "every step is 10 times too small: either the momentum is dampened (keep the plain sum, "
            "mom·avg + grad) or the squares are summed (average them: sqr_mom·sqr_avg + (1 - sqr_mom)·grad²).": (
                _trace(params, grads, _rms_fastai(dampen=True))
            ),
            "you divide by the average of the squares itself: divide by its square root (the RMS).": _trace(
                params, grads, _rms_fastai(root=False)
            ),
        }
        compare_traces(got, forms["fastai"], mistakes, "RMSPropMom")  # raises with the closest hint
    if str(follows).strip().lower() not in forms:
        raise NotYet(f'`rmsprop_follows` is {follows!r}; write "torch" or "fastai".')
    if str(follows).strip().lower() != matched:
        other = "momentum of the step divided by the RMS" if matched == "torch" else "momentum of the raw gradients"
        raise NotYet(f"your RMSPropMom follows {matched}'s form ({other}), but `rmsprop_follows` says {follows!r}.")
    return f"it follows {matched}'s form, step for step, as you said."


# ------------------------------------------------------------------------------------------ Nesterov
def _sgd(nesterov: bool, dampening: float = 0.0):
    def update(p, g, st, step):
        st["v"] = MOM * st.get("v", torch.zeros_like(p)) + (1 - dampening) * g
        p.sub_(0.1 * (g + MOM * st["v"] if nesterov else st["v"]))

    return update


@check_for("nesterov_sgd", "NesterovSGD")
def _nesterov(ns: dict) -> str:
    cls = need_callable(ns, "NesterovSGD")
    params, grads = _hidden_params(5)
    got = call(optimizer_trace, lambda ps: cls(ps, lr=0.1), params, grads, what="NesterovSGD(params, lr=0.1)")
    expected = optimizer_trace(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=MOM, nesterov=True), params, grads)
    compare_traces(
        got,
        expected,
        {
            "that is plain momentum (step by lr·v): Nesterov steps by lr·(grad + mom·v), looking one step "
            "ahead.": _trace(params, grads, _sgd(nesterov=False)),
            "your velocity is dampened (mom·v + (1 - mom)·grad): Nesterov's is the plain sum, mom·v + grad.": _trace(
                params, grads, _sgd(nesterov=True, dampening=MOM)
            ),
        },
        "NesterovSGD",
    )
    return "five steps equal to torch.optim.SGD(momentum=0.9, nesterov=True)."
