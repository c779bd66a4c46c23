"""Planted bugs make the suite fail.

Each case plants one plausible bug in a module that a lesson builds (in a copy of the `helpers`
package, changed in one place), then runs the suite's tests of that module against the copy: at
least one must fail. The unchanged copy passes the same tests, so a failure means the bug was
caught, not that the set-up is wrong. Each bug is one a learner would meet as a wrong figure with no
error, which is why the suite must notice it.

`-k` picks, for each bug, the tests expected to catch it, and renaming or deleting one of them makes
its case fail here (no test selected is no bug caught). All the runs share one process
(tests/mutation_runner.py), which imports torch and fastai once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SUMS_RESET = "self.sums, self.n = [0.0] * (1 + len(self.learn.metrics)), 0"
# (module, what goes wrong): (the test file and -k expression that guard it, [(old, new), ...])
MUTANTS = {
    ("sgd", "the loss has the wrong sign"): (
        "test_sgd.py -k mnist_loss_known",
        [
            (
                "torch.where(targets == 1, 1 - predictions, predictions)",
                "torch.where(targets == 1, predictions, 1 - predictions)",
            )
        ],
    ),
    ("sgd", "train_epoch never resets the gradients"): (
        "test_sgd.py -k train_epoch",
        [("            p.grad.zero_()\n", "")],
    ),
    ("sgd", "init_params ignores its std"): (
        "test_sgd.py -k init_params",
        [("(torch.randn(size) * std)", "torch.randn(size)")],
    ),
    ("sgd", "validation is a plain mean of batch means"): (
        "test_sgd.py -k validate_epoch",
        [("metric(model(xb), yb).item() * len(xb)", "metric(model(xb), yb).item()"), ("n += len(xb)", "n += 1")],
    ),
    ("basic_optim", "BasicOptim never clears the gradients"): (
        "test_sgd.py -k basic_optim",
        [("        for p in self.params:\n            p.grad = None", "        pass")],
    ),
    ("mnist", "update_with_wd ignores wd"): (
        "test_mnist.py -k update_with_wd",
        [("loss_func(model(xb), yb) + wd * w2", "loss_func(model(xb), yb)")],
    ),
    ("learner", "validation runs in training mode"): (
        "test_learner.py -k eval_mode",
        [("    self.learn.model.eval()\n", "    self.learn.model.train()\n")],
    ),
    ("learner", "a new optimizer at every fit"): (
        "test_learner.py -k kept_across_fits",
        [("        if self.opt is None:\n            self.create_opt()", "        self.create_opt()")],
    ),
    ("learner", "fit without lr keeps the last learning rate"): (
        "test_learner.py -k fit_without_lr",
        [('group["lr"] = self.lr if lr is None else lr', 'group["lr"] = group["lr"] if lr is None else lr')],
    ),
    ("learner", "a cancelled batch records the last batch's loss"): (
        "test_learner.py -k recorded_twice",
        [("        self.pred = self.loss = None  # until this batch computes them\n", "")],
    ),
    ("learner", "the validation sums run on from the last epoch"): (
        "test_learner.py -k cancelled_validation",
        [
            (f"    {SUMS_RESET}\n", ""),
            ("self.avg = [], [], [], [], [], 0.0", "self.avg = [], [], [], [], [], 0.0\n        " + SUMS_RESET),
        ],
    ),
    ("learner", "the smoothed loss is not bias-corrected"): (
        "test_learner.py -k smoothed_loss",
        [("self.avg / (1 - self.beta ** len(self.losses))", "self.avg")],
    ),
    ("optim", "Adam without bias correction"): (
        "test_optim.py -k 100_steps and Adam",
        [('debias1, debias2 = 1 - mom ** state["step"], 1 - sqr_mom ** state["step"]', "debias1, debias2 = 1.0, 1.0")],
    ),
    ("optim", "weight decay is never applied"): (
        "test_optim.py -k 100_steps",
        [('    if group["wd"] == 0:\n        return grad', "    return grad")],
    ),
    ("optim", "wd_groups decays the biases too"): (
        "test_optim.py -k wd_groups",
        [('if name == "bias"', 'if name == "no such parameter"')],
    ),
    ("optim", "zero_grad fills with zeros, as fastai's"): (
        "test_optim.py -k zero_grad",
        [("            p.grad = None", "            p.grad.zero_()")],
    ),
    ("schedules", "one-cycle ignores pct_start"): (
        "test_schedules.py -k pct_start",
        [
            ("combined_cos(pct_start, lr_max / div", "combined_cos(0.25, lr_max / div"),
            ("combined_cos(pct_start, *moms)", "combined_cos(0.25, *moms)"),
        ],
    ),
    ("schedules", "one-cycle's phases swapped"): (
        "test_schedules.py -k pct_start",
        [
            (
                "if pos < pct:\n            return sched_cos(start, middle, pos / pct)",
                "if pos >= pct:\n            return sched_cos(start, middle, pos / pct)",
            )
        ],
    ),
    ("schedules", "lr_find does not put the weights back"): (
        "test_schedules.py -k lr_find_equals",
        [("        self.learn.model.load_state_dict(self.saved[0])\n", "")],
    ),
    ("schedules", "lr_find suggests the start of the valley"): (
        "test_schedules.py -k lr_find_equals",
        [("finder.lrs[first + finder.valley.index]", "finder.lrs[first + finder.valley.start]")],
    ),
    ("cnn", "a convolution without padding"): (
        "test_cnn.py -k shapes",
        [("padding=1)]", "padding=0)]")],
    ),
}


def planted(tmp_path: Path, module: str, changes: list[tuple[str, str]]) -> Path:
    """A copy of the package with `changes` made to `module`; the folder to put first on sys.path."""
    shutil.copytree(ROOT / "helpers", tmp_path / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "helpers" / f"{module}.py"
    source = path.read_text()
    for old, new in changes:
        assert source.count(old) == 1, f"the code to break is not in helpers/{module}.py any more: {old!r}"
        source = source.replace(old, new)
    path.write_text(source)
    return tmp_path


def job(package_dir: Path, guards: str) -> dict:
    test_file, _, select = guards.split(maxsplit=2)
    args = ["--import-mode=append", "--rootdir", str(ROOT), str(ROOT / "tests" / test_file), "-k", select]
    return {"package_dir": str(package_dir), "args": args}


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, tuple[int, str]]:
    """Every run, in one process: each planted bug; the unchanged copy with every guard; and a copy
    that cannot be imported, to show that the runs import the copies and not the package itself."""
    tmp = tmp_path_factory.mktemp("mutants")
    jobs = {
        name(case): job(planted(tmp / str(i), case[0], changes), guards)
        for i, (case, (guards, changes)) in enumerate(MUTANTS.items())
    }
    intact, by_file = planted(tmp / "intact", "sgd", []), {}
    for guards, _ in MUTANTS.values():
        test_file, _, select = guards.split(maxsplit=2)
        by_file.setdefault(test_file, []).append(f"({select})")
    for test_file, selections in by_file.items():  # one run per test file, every guard of it
        jobs[f"intact: {test_file}"] = job(intact, f"{test_file} -k {' or '.join(selections)}")
    broken = planted(
        tmp / "broken", "__init__", [('"""Shared code', 'raise ImportError("the planted copy")\n"""Shared code')]
    )
    jobs["broken"] = job(broken, "test_sgd.py -k mnist_loss_known")
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "mutation_runner.py"), str(tmp / "jobs.json")],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def name(case: tuple[str, str]) -> str:
    return f"{case[0]}: {case[1]}"


def test_the_guards_pass_on_the_unchanged_package(results):
    failed = {k: v[1] for k, v in results.items() if k.startswith("intact") and v[0] != 0}
    assert not failed, failed


def test_the_runs_import_the_planted_copy(results):
    code, out = results["broken"]
    assert code != 0 and "the planted copy" in out


@pytest.mark.parametrize("case", list(MUTANTS), ids=name)
def test_a_planted_bug_fails_the_suite(case, results):
    code, out = results[name(case)]
    # 1: a test failed; 5 would mean no test was selected, which catches nothing
    assert code == 1, f"no test noticed: {case[1]}\n{out}"
