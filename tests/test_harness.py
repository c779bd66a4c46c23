"""The nbval harness really compares stored outputs, and sanitizes only what should differ.

The demo as stored and edited variants of it are put one after the other into one notebook, which
one nbval run checks (one pytest start, one kernel, one `import torch` for all of them); each
variant's verdict is read from the JUnit report. The suite itself does not collect the demo
(`conftest.py`): its unchanged copy here is that check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

HERE = Path(__file__).parent
DEMO = json.loads((HERE / "nbval_demo.ipynb").read_text())


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


# variant -> (how to change the stored notebook, how many cells must fail)
VARIANTS = {"as_stored": (lambda nb: None, 0), "changed_outputs": (changed_outputs, 2), "stored_on_gpu": (stored_on_gpu, 0)}


@pytest.fixture(scope="module")
def verdicts(tmp_path_factory) -> dict[str, list[str]]:
    folder = tmp_path_factory.mktemp("nbval")
    combined = json.loads(json.dumps(DEMO))
    combined["cells"] = []
    for name, (change, _) in VARIANTS.items():  # each variant's code cells, in turn, in one notebook
        nb = json.loads(json.dumps(DEMO))
        change(nb)
        combined["cells"] += [c for c in nb["cells"] if c["cell_type"] == "code"]
    (folder / "variants.ipynb").write_text(json.dumps(combined))
    report = folder / "report.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "--nbval",
           "--nbval-current-env", "--nbval-sanitize-with", str(HERE / "sanitize.cfg"), f"--junitxml={report}",
           str(folder / "variants.ipynb")]
    r = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "SGD_DEVICE": "cpu"})
    assert report.exists(), r.stdout + r.stderr
    # nbval names its items "Cell N", one per code cell, in order.
    cases = ["failed" if c.find("failure") is not None or c.find("error") is not None else "passed"
             for c in ET.parse(report).iter("testcase")]
    n_code = sum(c["cell_type"] == "code" for c in DEMO["cells"])
    assert len(cases) == n_code * len(VARIANTS), r.stdout
    return {name: cases[i * n_code:(i + 1) * n_code] for i, name in enumerate(VARIANTS)}


def test_demo_has_stored_outputs_with_execution_counts():
    code = [c for c in DEMO["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code)
    assert sum(bool(c["outputs"]) for c in code) >= 4


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_nbval_verdict(verdicts, variant):
    results = verdicts[variant]
    n_code = sum(c["cell_type"] == "code" for c in DEMO["cells"])
    assert len(results) == n_code, f"{variant}: {results}"
    assert results.count("failed") == VARIANTS[variant][1], f"{variant}: {results}"
