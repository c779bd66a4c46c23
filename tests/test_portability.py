"""Lessons that hold on any learner's machine: figures compared within tolerances, marks as tags.

The comparison itself runs under real nbval in tests/test_harness.py; these check its rules and the
lessons' metadata without starting a kernel.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from nbval.plugin import get_sanitize_patterns
from nbval_tolerance import split_numbers, tolerance_of, within

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb")) + [ROOT / "tests" / "nbval_demo.ipynb"]
NBVAL_TAGS = {"nbval-ignore-output", "nbval-skip", "raises-exception", "nbval-check-output"}


def code_cells(path: Path):
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


SANITIZE = get_sanitize_patterns((ROOT / "tests" / "sanitize.cfg").read_text())  # as nbval reads it


def printed(cell) -> str:
    """The cell's stored text outputs, sanitized as nbval sanitizes them (addresses, paths, timings)."""
    parts = [
        o["text"] if o["output_type"] == "stream" else o.get("data", {}).get("text/plain", "")
        for o in cell.get("outputs", [])
    ]
    text = "".join("".join(p) for p in parts)
    for regex, replace in SANITIZE:
        text = re.sub(regex, replace, text)
    return text


def test_numbers_move_only_within_the_tolerance():
    tol = {"abs": 0.005, "rel": 0.0}
    stored = "one epoch: accuracy 0.9654, validation loss 0.1258"
    assert within("one epoch: accuracy 0.9650, validation loss 0.1249", stored, tol)
    assert not within("one epoch: accuracy 0.9854, validation loss 0.1258", stored, tol)
    assert not within("one epoch: accuracy 0.9654, training loss 0.1258", stored, tol)  # the words count
    assert not within("one epoch: accuracy 0.9654", stored, tol)  # and how many numbers
    assert within("1e-05", "1.2e-05", {"abs": 0.0, "rel": 0.5}) and not within("1e-05", "3e-05", {"abs": 0, "rel": 0.5})


def test_tensor_realignment_is_not_a_difference():
    tol = {"abs": 0.002, "rel": 0.0}
    assert within("tensor([-0.0010,  0.2500])", "tensor([ 0.0005,  0.2500])", tol)
    assert not within("tensor([-0.0010,  0.2500])", "tensor([ 0.0005,  0.2600])", tol)


def test_default_tolerance_is_the_printed_digits():
    assert tolerance_of({}) == {"abs": 0.0, "rel": 0.0}
    assert within("tensor([0.3333])", "tensor([0.3333])", tolerance_of({}))
    assert not within("tensor([0.3334])", "tensor([0.3333])", tolerance_of({}))


@pytest.mark.parametrize("bad", [{"abs": -1}, {"absolute": 0.1}, {"rel": "0.1"}, [0.1], {"abs": float("inf")}])
def test_a_malformed_tolerance_says_what_it_should_look_like(bad):
    with pytest.raises(ValueError, match='"tolerance"'):
        tolerance_of({"tolerance": bad})


def test_split_numbers():
    assert split_numbers("lr 3.0e-03, 784-30-1 net: -0.5")[1] == [3.0e-03, 784, -30, -1, -0.5]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_marks_are_tags_not_comments(path):
    """Learners read every line of a cell: nbval's marks go in the cell's tags."""
    for cell in code_cells(path):
        source = "".join(cell["source"])
        assert "NBVAL_" not in source, f"{path.name}: use nbval's cell tags, not comments: {source[:60]!r}"
        tolerance_of(cell["metadata"])  # well-formed wherever it is given
        assert "execution" not in cell["metadata"], (
            f"{path.name}: stored execution timings (re-run with tools/execute_notebooks.py)"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_printed_figure_escapes_comparison(path):
    """A cell whose output nbval does not compare prints no number (a figure's size aside):
    figures that move are compared within a tolerance instead."""
    for cell in code_cells(path):
        if {"nbval-ignore-output", "nbval-skip"} & set(cell["metadata"].get("tags", [])):
            lines = printed(cell).replace("0xADDRESS", "").splitlines()
            text = "\n".join(line for line in lines if not line.startswith("<Figure size"))
            assert not split_numbers(text)[1], f"{path.name}: an ignored cell prints figures: {text[:80]!r}"
