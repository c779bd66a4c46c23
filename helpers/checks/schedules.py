"""Checks of the lr_find and one-cycle lesson: schedule functions at hidden positions, and the learning
rate that fastai's `steep` suggestion picks on a hidden loss curve."""

from __future__ import annotations

import math

import torch

from . import NotYet, as_number, call, check_for, describe, first_mistake, need_callable


def sched_cos(start: float, end: float, pos: float) -> float:
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


def sched_lin(start: float, end: float, pos: float) -> float:
    return start + (end - start) * pos


POSITIONS = (0.0, 0.1, 0.37, 0.5, 0.81, 0.99)


def _values(fn, positions, what: str) -> list[float]:
    return [as_number(call(fn, pos, what=f"{what} at pos {pos}"), f"{what} at pos {pos}") for pos in positions]


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-12) for x, y in zip(a, b))


def _match(got: list[float], expected: list[float], mistakes: dict[str, list[float]], what: str, at: list) -> None:
    if _close(got, expected):
        return
    if hint := first_mistake(got, mistakes, _close):
        raise NotYet(hint)
    i = next(i for i, (x, y) in enumerate(zip(got, expected)) if not math.isclose(x, y, rel_tol=1e-4))
    raise NotYet(f"{what} at {at[i]}: expected {expected[i]:.4g}, got {got[i]:.4g}.")


@check_for("cosine_no_warmup", "cosine_no_warmup")
def _cosine_no_warmup(ns: dict) -> str:
    make = need_callable(ns, "cosine_no_warmup")
    lr_max, div_final = 0.02, 1e4
    sched = call(make, lr_max, div_final, what="cosine_no_warmup(0.02, 1e4)")
    if not callable(sched):
        raise NotYet(f"cosine_no_warmup(0.02, 1e4) returned {describe(sched)}; return a function of pos.")
    end = lr_max / div_final
    got = _values(sched, POSITIONS, "the schedule")
    _match(
        got,
        [sched_cos(lr_max, end, p) for p in POSITIONS],
        {
            "the phases are swapped: the schedule should start at lr_max and fall to lr_max / div_final.": [
                sched_cos(end, lr_max, p) for p in POSITIONS
            ],
            "that is a straight line: follow half a cosine from lr_max down to lr_max / div_final.": [
                sched_lin(lr_max, end, p) for p in POSITIONS
            ],
            "it ends at 0: end at lr_max / div_final.": [sched_cos(lr_max, 0.0, p) for p in POSITIONS],
        },
        "cosine_no_warmup(0.02, 1e4)",
        [f"pos {p}" for p in POSITIONS],
    )
    return "half a cosine from lr_max to lr_max / div_final."


def one_cycle_lin(lr_max, n_steps, div=25.0, div_final=1e5, pct_start=0.25, offset=0, last=None, swap=False):
    """The reference (offset, last, swap: the known mistakes)."""
    out = []
    for i in range(n_steps):
        pos = (i + offset) / (last if last else n_steps)
        if pos < pct_start:
            f = sched_cos if swap else sched_lin
            out.append(f(lr_max / div, lr_max, pos / pct_start))
        else:
            f = sched_lin if swap else sched_cos
            out.append(f(lr_max, lr_max / div_final, (pos - pct_start) / (1 - pct_start)))
    return out


@check_for("one_cycle_linear_warmup", "sched_lin", "one_cycle_lin")
def _one_cycle_lin(ns: dict) -> str:
    lin = need_callable(ns, "sched_lin")
    cycle = need_callable(ns, "one_cycle_lin")
    start, end = 0.3, 2.5
    got = [as_number(call(lin, start, end, p, what=f"sched_lin(0.3, 2.5, {p})"), "sched_lin") for p in POSITIONS]
    _match(
        got,
        [sched_lin(start, end, p) for p in POSITIONS],
        {
            "sched_lin: start and end are swapped: at pos 0 it should give start.": [
                sched_lin(end, start, p) for p in POSITIONS
            ],
            "sched_lin: you add end·pos to start: the line goes from start to end, start + (end - start)·pos.": [
                start + end * p for p in POSITIONS
            ],
        },
        "sched_lin(0.3, 2.5, pos)",
        [f"pos {p}" for p in POSITIONS],
    )
    n, lr_max = 40, 0.01
    lrs = call(cycle, lr_max, n, what=f"one_cycle_lin({lr_max}, {n})")
    try:
        lrs = [float(x) for x in lrs]
    except (TypeError, ValueError):
        raise NotYet(f"one_cycle_lin(0.01, 40) returned {describe(lrs)}; return one learning rate per step.") from None
    if len(lrs) != n:
        raise NotYet(f"one_cycle_lin(0.01, 40) gave {len(lrs)} learning rates; expected one per step, 40.")
    _match(
        lrs,
        one_cycle_lin(lr_max, n),
        {
            "one_cycle_lin is one step ahead: step i is at pos i / n_steps, so the first step is at pos 0 "
            "(lr_max / div).": one_cycle_lin(lr_max, n, offset=1),
            "one_cycle_lin reaches pos 1 at the last step: step i is at pos i / n_steps (as fastai counts), "
            "not i / (n_steps - 1).": one_cycle_lin(lr_max, n, last=n - 1),
            "one_cycle_lin's phases are swapped: warm up along a straight line, then come down along a cosine.": (
                one_cycle_lin(lr_max, n, swap=True)
            ),
        },
        "one_cycle_lin(0.01, 40)",
        [f"step {i}" for i in range(n)],
    )
    return "a straight warm-up to lr_max over 25% of the steps, then a cosine down."


def _curve() -> tuple[torch.Tensor, torch.Tensor]:
    """A loss curve as lr_find records it: flat, falling fastest near lr 2e-3, then blowing up."""
    lrs = torch.logspace(-6, 0, 60)
    x = lrs.log10()
    losses = 2.3 - 1.2 * torch.sigmoid((x + 2.7) * 3) + 0.35 * torch.sigmoid((x + 0.8) * 6) * 4
    return lrs, losses


def steep_reference(lrs, losses, log=True, largest=False) -> int:
    """Index of fastai's `steep` suggestion: the steepest fall of the loss against log(lr)."""
    dx = (lrs[1:].log() - lrs[:-1].log()) if log else (lrs[1:] - lrs[:-1])
    slopes = (losses[1:] - losses[:-1]) / dx
    return int(slopes.argmax() if largest else slopes.argmin())


@check_for("steep", "steep")
def _steep(ns: dict) -> str:
    fn = need_callable(ns, "steep")
    lrs, losses = _curve()
    got = as_number(call(fn, lrs.clone(), losses.clone(), what="steep(lrs, losses) on a hidden curve"), "steep")
    i = steep_reference(lrs, losses)
    if any(math.isclose(got, lrs[j].item(), rel_tol=1e-4) for j in (i, i + 1)):
        return f"the loss falls fastest at about {got:.1e} on the hidden curve."
    hints = {
        steep_reference(lrs, losses, largest=True): "that is where the loss rises fastest: take the most negative "
        "slope (the minimum of the gradient).",
        steep_reference(lrs, losses, log=False): "you took the slope against lr: take it against log(lr), as the "
        "plot's axis is logarithmic.",
    }
    for j, hint in hints.items():
        if any(math.isclose(got, lrs[k].item(), rel_tol=1e-4) for k in (j, j + 1)):
            raise NotYet(hint)
    raise NotYet(f"steep gave {got:.3g}; the loss of the hidden curve falls fastest at {lrs[i].item():.3g}.")
