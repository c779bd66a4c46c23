"""The exercises' checks in the lessons and in the student copies: a check after every exercise, the
solutions passing every one of them, and the student copies, run as they are under nbval, saying
"not yet" to every one (a learner-facing line, not an error)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import checks
from tools import classroom

ROOT = Path(__file__).resolve().parents[1]
ROWS, PENDING = classroom.exercise_table()
LESSONS = classroom.lessons()
CHECKED = [p for p in LESSONS if p.name[:2] not in PENDING]


def check_cells(nb) -> list:
    return [c for c in nb.cells if classroom.CHECK in c.metadata.get("tags", [])]


def stdout_of(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")


def test_every_lesson_has_its_checks_or_is_pending():
    numbers = [p.name[:2] for p in LESSONS]
    assert set(PENDING) <= set(numbers), "pending lessons are lessons"
    listed = {x.lesson for x in ROWS if not x.planned}
    assert listed == set(numbers) - set(PENDING), "give every lesson's exercises a row in tools/exercises.toml"


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: p.stem)
def test_every_exercise_is_followed_by_its_check_and_the_solution_passes_it(path):
    nb = nbformat.read(path, as_version=4)
    prompts = classroom.exercise_prompts(nb.cells)
    rows = {x.number: x for x in ROWS if x.lesson == path.name[:2]}
    assert sorted(prompts) == sorted(rows), "one row per exercise in tools/exercises.toml"
    for number, (i, end) in prompts.items():
        x = rows[number]
        cell = nb.cells[end]
        assert cell.cell_type == "code" and cell.source == x.source and cell.get("id") == x.cell_id, number
        assert nb.cells[i].source.endswith(x.answer), "the prompt names what the check reads"
        out = stdout_of(cell)
        assert out.startswith(f"{checks.PASSED}: {x.check} — ") and out.count("\n") == 1, f"the stored run: {out!r}"
    assert len(check_cells(nb)) == len(prompts)


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: p.stem)
def test_student_copy_keeps_every_check_and_stores_its_not_yet(path):
    student = classroom.student_copy(nbformat.read(path, as_version=4))
    cells = check_cells(student)
    assert cells
    for cell in cells:
        key = cell.source.split('"')[1]
        assert stdout_of(cell) == checks.not_yet_message(key) + "\n"
        i = student.cells.index(cell)
        assert "exercise" in student.cells[i - 1].metadata.get("tags", []), "right after the empty answer cell"


def test_sync_adds_checks_once_and_refuses_a_stale_edit(tmp_path):
    path = next(p for p in CHECKED if any(x.edits for x in ROWS if x.lesson == p.name[:2]))
    nb = nbformat.read(path, as_version=4)
    bare = [c for c in nb.cells if classroom.CHECK not in c.metadata.get("tags", [])]
    rows = [x for x in ROWS if x.lesson == path.name[:2]]
    once = classroom.with_checks(bare, path.name[:2], rows)
    twice = classroom.with_checks(once, path.name[:2], rows)
    assert [c.source for c in once] == [c.source for c in twice] == [c.source for c in nb.cells]
    stale = [classroom.Exercise(x.lesson, x.number, x.check, x.answer, (("no such line", "new"),)) for x in rows]
    with pytest.raises(SystemExit, match="no longer contains 'no such line'"):
        classroom.with_checks(bare, path.name[:2], stale)
    with pytest.raises(SystemExit, match="has no exercise 9"):
        classroom.with_checks(bare, path.name[:2], [classroom.Exercise(path.name[:2], 9, "steep", "x")])


@pytest.mark.parametrize("path", CHECKED, ids=lambda p: p.stem)
def test_student_copy_run_as_it_is_says_not_yet_under_nbval(path):
    """nbval runs the student copy top to bottom and compares every cell with what is stored: the
    lesson's outputs as in the lesson, and each check's "not yet" line; nothing may raise."""
    folder = ROOT / "build" / "student-run"
    folder.mkdir(parents=True, exist_ok=True)
    (copy,) = classroom.students(folder, [path])
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:xdist", "-q", str(copy.relative_to(ROOT))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
