"""Checks for the lessons' exercises: a learner runs `helpers.check("name")` after answering one.

Each check tests what the learner defined (a function, a class, a callback, a number) on cases
the learner does not see, and prints one line: passed, or what is wrong, in words: the shape that
was expected, the value at one input, the step that diverged, or the mistake it recognises
("you sum the losses without dividing by n_acc"). It never raises and never shows a traceback;
before the learner has answered, it says so ("not yet: define `l2_distance` ...").

    helpers.check("l2_distance")            # in a notebook: reads the notebook's variables
    helpers.checks.run("l2_distance", ns)   # Result(key, passed, message), for tests and grading

Checks run offline on the CPU in a couple of seconds, leave the random number generators as they
found them, and import fastai only in the lessons that use it. The checks themselves live in the
modules of this package, one per part of the course, each registered under its key with `@check_for`.
"""

from __future__ import annotations

import contextlib
import io
import random
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

__all__ = ["Result", "NotYet", "check", "run", "keys", "check_for", "not_yet_message", "PASSED", "NOT_YET"]

PASSED, NOT_YET = "✅ passed", "❌ not yet"


class NotYet(Exception):
    """Raised inside a check: the learner's answer is not right yet; the message says why, in words."""


@dataclass(frozen=True)
class Result:
    """What one check found: `passed`, and the line the learner reads."""

    key: str
    passed: bool
    message: str

    @property
    def line(self) -> str:
        return f"{PASSED if self.passed else NOT_YET}: {self.key} — {self.message}"


@dataclass(frozen=True)
class _Check:
    key: str
    func: Callable[[dict], str]
    names: tuple[str, ...]  # what the learner defines, in the order the check asks for them


_REGISTRY: dict[str, _Check] = {}


def check_for(key: str, *names: str) -> Callable[[Callable[[dict], str]], Callable[[dict], str]]:
    """Register `func(ns) -> str` as the check `key`; it reads the learner's `names` from `ns` and
    raises `NotYet` with a hint when something is wrong, or returns a short note when all is right."""

    def register(func: Callable[[dict], str]) -> Callable[[dict], str]:
        if key in _REGISTRY:
            raise ValueError(f"two checks are registered as {key!r}")
        _REGISTRY[key] = _Check(key, func, names)
        return func

    return register


def _load_all() -> None:
    from . import basics, cnn, fastai_intro, learner, optimizers, schedules  # noqa: F401  (they register)


def keys() -> list[str]:
    """Every check's key, in the order of the course."""
    _load_all()
    return list(_REGISTRY)


def names_of(key: str) -> tuple[str, ...]:
    """What the learner defines for the check `key`."""
    _load_all()
    return _lookup(key).names


def _lookup(key: str) -> _Check:
    try:
        return _REGISTRY[key]
    except KeyError:
        raise KeyError(f"there is no check named {key!r}; the checks are: {', '.join(_REGISTRY)}") from None


def not_yet_message(key: str) -> str:
    """The line a check prints before the learner has defined anything: what it prints in a
    student copy run as it is."""
    return run(key, {}).line


@contextlib.contextmanager
def _quiet_and_seeded() -> Iterator[None]:
    """The check's own random numbers (seeded) and no printing from the code it calls; the
    learner's generators, default dtype and gradient mode come back as they were."""
    py_state = random.getstate()
    try:
        import numpy as np

        np_state = np.random.get_state()
    except ImportError:  # pragma: no cover - numpy ships with torch's users
        np, np_state = None, None
    dtype, grad = torch.get_default_dtype(), torch.is_grad_enabled()
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        torch.manual_seed(0)
        try:
            yield
        finally:
            random.setstate(py_state)
            if np is not None:
                np.random.set_state(np_state)
            torch.set_default_dtype(dtype)
            torch.set_grad_enabled(grad)


def run(key: str, ns: dict) -> Result:
    """Run the check `key` on the names in `ns` (a notebook's globals); never raises for anything
    the learner's code does."""
    _load_all()
    chk = _lookup(key)
    try:
        with _quiet_and_seeded():
            note = chk.func(ns)
        return Result(key, True, note or "right on every hidden case.")
    except NotYet as e:
        return Result(key, False, str(e))
    except Exception as e:  # a bug of the check itself: say so in one line, not a traceback
        where = traceback.extract_tb(e.__traceback__)[-1]
        return Result(
            key,
            False,
            f"the check itself failed ({type(e).__name__}: {e}, line {where.lineno}); "
            "please report it to your instructor.",
        )


def check(key: str, ns: dict | None = None) -> None:
    """Print the verdict of the check `key` on the caller's variables (a notebook's globals)."""
    if ns is None:
        ns = sys._getframe(1).f_globals
    print(run(key, ns).line)


# ---------------------------------------------------------------------- tools for writing checks
_MISSING = object()


def need(ns: dict, *names: str) -> Any:
    """The learner's values of `names` (one value, or a tuple), or NotYet saying which to define."""
    values = []
    for name in names:
        value = ns.get(name, _MISSING)
        if value is _MISSING:
            raise NotYet(f"`{name}` is not defined yet: answer in the cell above, run it, then run this cell.")
        values.append(value)
    return values[0] if len(values) == 1 else tuple(values)


def lesson_value(ns: dict, name: str) -> Any:
    """A variable the lesson itself defined, which the check needs (run the lesson's cells first)."""
    value = ns.get(name, _MISSING)
    if value is _MISSING:
        raise NotYet(f"the lesson's `{name}` is not defined: run the lesson's cells from the top first.")
    return value


def need_callable(ns: dict, name: str) -> Callable:
    value = need(ns, name)
    if not callable(value):
        raise NotYet(f"`{name}` should be a function (or class), but it is {describe(value)}.")
    return value


def call(func: Callable, *args: Any, what: str | None = None, **kwargs: Any) -> Any:
    """`func(*args, **kwargs)`; an exception becomes NotYet naming the call and the error in one line."""
    try:
        return func(*args, **kwargs)
    except NotYet:
        raise
    except Exception as e:
        name = what or f"{getattr(func, '__name__', 'it')}({', '.join(describe(a) for a in args)})"
        raise NotYet(f"calling {name} raised {type(e).__name__}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else "(no message)"


def describe(value: Any) -> str:
    """A short, learner-readable description of a value: a tensor's shape, a list's length."""
    if isinstance(value, torch.Tensor):
        if value.ndim == 0:
            return f"the number {value.item():.4g}"
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return f"the number {value:.4g}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    if value is None:
        return "None"
    return f"a {type(value).__name__}"


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """`value` as a float tensor, or NotYet saying what it was."""
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu()
    try:
        return torch.as_tensor(value, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        raise NotYet(f"{what} should be a tensor or a number, but it is {describe(value)}.") from None


def as_number(value: Any, what: str) -> float:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value.item())
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise NotYet(f"{what} should be a number, but it is {describe(value)}.")


def close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=atol)


def accuracies_per_epoch(value: Any, name: str, epochs: int, train: str) -> list[float]:
    """The learner's list `name` of accuracies, one per epoch; NotYet if it is not `epochs` numbers
    (`train` says how to make it: "train for 20 epochs")."""
    try:
        accs = [float(a) for a in value]
    except (TypeError, ValueError):
        raise NotYet(f"`{name}` should be the list of accuracies per epoch, but it is {describe(value)}.") from None
    if len(accs) != epochs:
        raise NotYet(f"`{name}` holds {len(accs)} accuracies; {train}.")
    return accs


def same_shape(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    if got.shape != expected.shape:
        raise NotYet(f"{what} has shape {list(got.shape)}; expected {list(expected.shape)}.")


def first_mistake(got: Any, mistakes: dict[str, Any], equal: Callable[[Any, Any], bool]) -> str | None:
    """The hint of the first known mistake whose result `got` equals, if any."""
    for hint, value in mistakes.items():
        try:
            if equal(got, value):
                return hint
        except Exception:  # a mistake's result of another shape: not this one
            continue
    return None


def compare(
    got: Any,
    expected: Any,
    what: str,
    mistakes: dict[str, Any] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    at: str = "",
) -> None:
    """NotYet unless tensor `got` equals `expected` within tolerance; when it equals the result of
    a known mistake, the hint names that mistake; otherwise it shows the first differing value."""
    got_t, exp_t = as_tensor(got, what), as_tensor(expected, "the reference")
    if close(got_t, exp_t, rtol, atol):
        return
    hint = first_mistake(got_t, mistakes or {}, lambda g, m: close(g, as_tensor(m, "mistake"), rtol, atol))
    if hint:
        raise NotYet(hint)
    same_shape(got_t, exp_t, what)
    if not torch.isfinite(got_t).all():
        raise NotYet(f"{what}{at} holds nan or inf values.")
    diff = (got_t - exp_t).abs().flatten()
    i = int(diff.argmax())
    where = f" at position {list(_unravel(i, exp_t.shape))}" if exp_t.ndim else ""
    raise NotYet(f"{what}{at}{where}: expected {exp_t.flatten()[i]:.4g}, got {got_t.flatten()[i]:.4g}.")


def _unravel(i: int, shape: torch.Size) -> tuple[int, ...]:
    out = []
    for n in reversed(shape):
        out.append(i % n)
        i //= n
    return tuple(reversed(out))
