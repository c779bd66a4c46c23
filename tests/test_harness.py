"""The nbval harness really compares stored outputs, sanitizes only what should differ, and lets a
training figure move only within its cell's tolerance.

The demo as stored, edited variants of it, and cells taken from lesson 04 with their stored output
moved are put one after the other into one notebook, which one nbval run checks (one pytest start,
one kernel, one `import torch` for all of them); each variant's verdict is read from the JUnit
report. The run has `MPLBACKEND=Agg` set, as many servers and CI images do: the demo's plot must
still be drawn inline. The suite itself does not collect the demo (`conftest.py`): its unchanged
copy here is that check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from nbval_tolerance import NUMBER, tolerance_of

from tools.classroom import lesson

HERE = Path(__file__).parent
DEMO = json.loads((HERE / "nbval_demo.ipynb").read_text())
LESSON_04 = json.loads(lesson("04").read_text())


def code_cell(nb: dict, source_start: str) -> dict:
    return next(c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).startswith(source_start))


def changed_outputs(nb):
    """Two stored outputs edited: a number, and one digit deep inside a printed tensor."""
    code_cell(nb, "sum(range(101))")["outputs"][0]["data"]["text/plain"] = "5051"
    out = code_cell(nb, "torch.arange(6)")["outputs"][0]["data"]
    out["text/plain"] = "".join(out["text/plain"]).replace("0.3333", "0.3334")


def stored_on_gpu(nb):
    """What the same notebook stores when saved on a CUDA machine: other device strings and addresses."""
    code_cell(nb, "torch.ones(3")["outputs"][0]["data"]["text/plain"] = "tensor([2., 2., 2.], device='cuda:0')"
    code_cell(nb, 'print(f"running on')["outputs"][0]["text"] = "running on cuda\n"
    code_cell(nb, "object()")["outputs"][0]["data"]["text/plain"] = "<object at 0x7f00deadbeef>"


def one_epoch_cell() -> dict:
    """Lesson 04's printed one-cycle accuracy, as stored, with its cell's tolerance."""
    return next(
        c
        for c in LESSON_04["cells"]
        if c["cell_type"] == "code"
        and "tolerance" in c["metadata"]
        and any("".join(o.get("text", "")).startswith("one epoch: accuracy") for o in c["outputs"])
    )


def lesson04_accuracy_moved(by: float) -> list[dict]:
    """A cell that prints lesson 04's stored line with the accuracy moved, checked against the stored one."""
    cell = json.loads(json.dumps(one_epoch_cell()))
    stored = "".join(cell["outputs"][0]["text"])
    accuracy = NUMBER.search(stored)
    moved = f"{stored[: accuracy.start()]}{float(accuracy.group()) + by:.4f}{stored[accuracy.end() :]}"
    cell["source"] = f"print({moved!r}, end='')"
    return [cell]


def demo_cells(change) -> list[dict]:
    nb = json.loads(json.dumps(DEMO))
    change(nb)
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


TOLERANCE = tolerance_of(one_epoch_cell()["metadata"])["abs"]
# variant -> (its code cells, how many of them must fail)
VARIANTS = {
    "as_stored": (demo_cells(lambda nb: None), 0),
    "changed_outputs": (demo_cells(changed_outputs), 2),
    "stored_on_gpu": (demo_cells(stored_on_gpu), 0),
    "lesson04_accuracy_within_tolerance": (lesson04_accuracy_moved(0.6 * TOLERANCE), 0),
    "lesson04_accuracy_moved_by_0.02": (lesson04_accuracy_moved(0.02), 1),
}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory) -> dict[str, list[str]]:
    folder = tmp_path_factory.mktemp("nbval")
    combined = json.loads(json.dumps(DEMO))
    combined["cells"] = []
    for cells, _ in VARIANTS.values():  # each variant's code cells, in turn, in one notebook
        combined["cells"] += cells
    (folder / "variants.ipynb").write_text(json.dumps(combined))
    report = folder / "report.xml"
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-p",
        "nbval_tolerance",
        "--nbval",
        "--nbval-current-env",
        "--nbval-sanitize-with",
        str(HERE / "sanitize.cfg"),
        f"--junitxml={report}",
        str(folder / "variants.ipynb"),
    ]
    r = subprocess.run(
        cmd,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "SGD_DEVICE": "cpu", "MPLBACKEND": "Agg", "PYTHONPATH": str(HERE)},
    )
    assert report.exists(), r.stdout + r.stderr
    # nbval names its items "Cell N", one per code cell, in order.
    cases = [
        "failed" if c.find("failure") is not None or c.find("error") is not None else "passed"
        for c in ET.parse(report).iter("testcase")
    ]
    assert len(cases) == sum(len(cells) for cells, _ in VARIANTS.values()), r.stdout
    verdicts, start = {}, 0
    for name, (cells, _) in VARIANTS.items():
        verdicts[name], start = cases[start : start + len(cells)], start + len(cells)
    return verdicts


def test_demo_has_stored_outputs_with_execution_counts():
    code = [c for c in DEMO["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code)
    assert sum(bool(c["outputs"]) for c in code) >= 4


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_nbval_verdict(verdicts, variant):
    results = verdicts[variant]
    assert results.count("failed") == VARIANTS[variant][1], f"{variant}: {results}"
