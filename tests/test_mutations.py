"""A broken helper makes the suite fail: each test breaks `helpers/sgd.py` in a copy of the package
on purpose and runs the helper tests against the copy, which must fail (and pass unbroken)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MUTATIONS = {
    "intact": None,
    "loss with the wrong sign": ("torch.where(targets == 1, 1 - predictions, predictions)",
                                 "torch.where(targets == 1, predictions, 1 - predictions)"),
    "BasicOptim without zero_grad": ("        for p in self.params:\n            p.grad = None",
                                     "        pass"),
    "train_epoch without resetting gradients": ("                p.grad.zero_()\n", ""),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_broken_helper_fails_the_suite(name, tmp_path):
    shutil.copytree(ROOT / "helpers", tmp_path / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    if MUTATIONS[name]:
        old, new = MUTATIONS[name]
        src = (tmp_path / "helpers" / "sgd.py").read_text()
        assert src.count(old) == 1, f"the code to break is not in helpers/sgd.py any more: {old!r}"
        (tmp_path / "helpers" / "sgd.py").write_text(src.replace(old, new))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:nbval", "-p", "no:xdist",
           "-o", "addopts=",
           "-W", "ignore::pytest.PytestAssertRewriteWarning",
           str(ROOT / "tests" / "test_sgd.py"), str(ROOT / "tests" / "test_lessons_agree.py")]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    if MUTATIONS[name] is None:  # the copy is the package imported, and unbroken it passes
        where = subprocess.run([sys.executable, "-c", "import helpers; print(helpers.__file__)"], cwd=tmp_path,
                               env=env, capture_output=True, text=True).stdout
        assert where.startswith(str(tmp_path)), f"the copy was not the one imported: {where}"
        assert r.returncode == 0, r.stdout[-3000:]
    else:
        assert r.returncode == 1 and "1 failed" in r.stdout, r.stdout[-3000:]
