"""A broken helper makes the suite fail.

Each case breaks `helpers/sgd.py` on purpose (a copy of its source, changed in one place, loaded as
a module), puts the broken functions in place of the real ones, and runs the suite's own tests of
them: at least one must fail. The unbroken copy must pass the same tests, so a failure means the
break was caught, not that the set-up is wrong.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from pathlib import Path

import pytest
import test_lessons_agree
import test_sgd

import helpers.sgd

SOURCE = Path(helpers.sgd.__file__).read_text()
MUTATIONS = {
    "intact": None,
    "loss with the wrong sign": (
        "torch.where(targets == 1, 1 - predictions, predictions)",
        "torch.where(targets == 1, predictions, 1 - predictions)",
    ),
    "BasicOptim without zero_grad": ("        for p in self.params:\n            p.grad = None", "        pass"),
    "train_epoch without resetting gradients": ("                p.grad.zero_()\n", ""),
}
# The tests that guard these helpers: every test function of the two modules that takes no arguments.
GUARDS = [
    f
    for m in (test_sgd, test_lessons_agree)
    for n, f in vars(m).items()
    if n.startswith("test_") and not inspect.signature(f).parameters
]


def load_variant(name: str, tmp_path: Path):
    src = SOURCE
    if MUTATIONS[name]:
        old, new = MUTATIONS[name]
        assert src.count(old) == 1, f"the code to break is not in helpers/sgd.py any more: {old!r}"
        src = src.replace(old, new)
    path = tmp_path / "sgd_variant.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("sgd_variant", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["sgd_variant"] = module
    spec.loader.exec_module(module)
    return module


def run_guards() -> list[str]:
    failed = []
    for test in GUARDS:
        try:
            test()
        except Exception as e:  # AssertionError, or a broken helper raising
            failed.append(f"{test.__module__}.{test.__name__}: {type(e).__name__}")
    return failed


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_broken_helper_fails_the_suite(name, tmp_path, monkeypatch):
    variant = load_variant(name, tmp_path)
    for attr in helpers.sgd.__all__:
        monkeypatch.setattr(helpers.sgd, attr, getattr(variant, attr))
    failed = run_guards()
    if MUTATIONS[name] is None:
        assert failed == []
    else:
        assert failed, f"no test noticed: {name}"
