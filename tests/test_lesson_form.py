"""The form every lesson keeps, measured from the lessons that lessons.toml lists: short cells that
read like a REPL session, nothing used before it is shown, checkpoints folded away and printing no
result of their own, and prose that speaks to learners."""

from __future__ import annotations

import ast
import builtins
import json
import statistics
from pathlib import Path

import pytest

from tools.classroom import lessons

LESSONS = lessons()


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def code_cells(path: Path) -> list[dict]:
    return [c for c in cells(path) if c["cell_type"] == "code"]


def lines(cell: dict) -> int:
    return len("".join(cell["source"]).splitlines())


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_code_cells_are_short(path):
    """Median code cell of 6 lines or fewer, at most two over 15, none over 30."""
    sizes = [lines(c) for c in code_cells(path)]
    longest = sorted(((lines(c), c.get("id")) for c in code_cells(path)), reverse=True)[:3]
    assert statistics.median(sizes) <= 6, f"median {statistics.median(sizes)}; longest cells {longest}"
    assert sum(n > 15 for n in sizes) <= 2, f"{sum(n > 15 for n in sizes)} cells over 15 lines: {longest}"
    assert max(sizes) <= 30, f"a cell of {max(sizes)} lines: grow it over several cells"


def _defined_and_used(source: str) -> tuple[set[str], set[str]]:
    tree = ast.parse(source)
    defined, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else defined).add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    return defined, used


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_nothing_is_used_before_the_cell_that_defines_it(path):
    """A cell may use only what this cell or an earlier one defines or imports: a learner reading top
    to bottom never meets a name (a class, a function) that is only shown further down."""
    code = [c for c in code_cells(path) if c.get("id") != "colab-setup"]
    parsed = [_defined_and_used("".join(c["source"])) for c in code]
    first_defined: dict[str, int] = {}
    for i, (defined, _) in enumerate(parsed):
        for name in defined:
            first_defined.setdefault(name, i)
    early = []
    for i, (defined, used) in enumerate(parsed):
        for name in used - defined - set(dir(builtins)):
            if first_defined.get(name, -1) > i:
                early.append(
                    f"cell {code[i].get('id')} uses {name}, defined in cell {code[first_defined[name]].get('id')}"
                )
    assert not early, early


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_checkpoints_are_folded_and_print_no_result_of_their_own(path):
    """Checkpoint cells are folded in JupyterLab (a learner can skip them), and a figure the lesson
    talks about is printed by a visible cell, never only inside a checkpoint."""
    for cell in code_cells(path):
        if not "".join(cell["source"]).lstrip().startswith("# checkpoint"):
            continue
        assert cell["metadata"].get("jupyter", {}).get("source_hidden") is True, cell["source"][:2]
        printed = "".join("".join(o.get("text", "")) for o in cell["outputs"] if o["output_type"] == "stream")
        shown = [o for o in cell["outputs"] if o["output_type"] in ("execute_result", "display_data")]
        assert not shown and all(line.startswith("checkpoint passed") for line in printed.splitlines()), printed


def test_checkpoints_are_introduced_in_the_first_lesson():
    prose = "".join("".join(c["source"]) for c in cells(LESSONS[0]) if c["cell_type"] == "markdown")
    assert "**Checkpoints.**" in prose and "skip them" in prose


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_prose_speaks_to_learners(path):
    """No build commands in a learner's text, and results rather than the tests' thresholds."""
    for cell in cells(path):
        if cell["cell_type"] != "markdown":
            continue
        text = "".join(cell["source"])
        assert "make students" not in text, text[:80]
        for phrase in ("the checkpoint asserts", "the checkpoint asks", "checked above", "(checked)"):
            assert phrase not in text, f"{path.name}: quote the result, not the test: {text[:120]!r}"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_each_lesson_fits_a_live_session(path):
    """At most 75 minutes taught live, by the estimate the README's table states (tools/classroom.py)."""
    from tools.classroom import live_minutes

    assert live_minutes(path) <= 75
