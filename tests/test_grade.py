"""`python -m tools.grade`: ten generated submissions of lesson 00 (right, wrong, half done, untouched,
crashing, raising, endless, deleting files, reaching the network, not a notebook) graded into one
table, each in its own sandboxed process, without harm to the others or to the instructor's files.

Lesson 00 runs in 10-30 s; with two at a time and a 100 s limit for the endless one, the whole
grading takes about 2.5 minutes on two cores (the test allows 6)."""

from __future__ import annotations

import csv
import hashlib
import json
import time
from pathlib import Path

import nbformat
import pytest

from tools import classroom, grade

LESSON = "00"
TIMEOUT = 100  # lesson 00 runs in 10-30 s, two at a time, beside the rest of the suite
KEYS = grade.lesson_checks(LESSON)

WRONG = {  # exercise -> a plausible wrong answer
    1: "def l2_distance(a, b):\n    return ((a - b) ** 2).mean((-1, -2))",
    2: "diff = mean7 - mean3",
    3: "grad_at_2 = torch.tensor(12.0)",
    4: "limit_raw, limit_scaled = (1 / torch.linalg.eigvalsh(2 * M.T @ M / len(M)).max().item() for M in (X, X_t))",
    5: "def apply_step_without_reset(params, t, lr):\n    apply_step(params, t, lr)",
}


def solutions(teacher) -> dict[int, str]:
    """Each exercise's solution code, from the lesson."""
    prompts = classroom.exercise_prompts(teacher.cells)
    return {
        n: "\n\n".join(c.source for c in teacher.cells[i + 1 : end] if c.cell_type == "code")
        for n, (i, end) in prompts.items()
    }


def fill(student, answers: dict[int, str]):
    """The student copy with these answers in its empty cells (exercise numbers in order)."""
    nb = nbformat.from_dict(json.loads(nbformat.writes(student)))
    blanks = [c for c in nb.cells if "exercise" in c.metadata.get("tags", [])][1:]  # [0]: the questionnaire
    for n, cell in enumerate(blanks, 1):
        if n in answers:
            cell.source = answers[n]
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("grading")
    precious = root / "instructor"
    precious.mkdir()
    (precious / "marks.txt").write_text("keep me\n")
    teacher = nbformat.read(classroom.lesson(LESSON), as_version=4)
    student = classroom.student_copy(teacher)
    right = solutions(teacher)
    hostile_files = (
        "import os, shutil\n"
        f"for attempt in (lambda: shutil.rmtree({str(precious)!r}),\n"
        f"                lambda: os.remove({str(precious / 'marks.txt')!r}),\n"
        f"                lambda: open({str(precious / 'owned.txt')!r}, 'w').write('x')):\n"
        "    try:\n        attempt()\n    except PermissionError as e:\n        print('refused:', e)\n" + right[1]
    )
    hostile_net = (
        "import socket, subprocess, urllib.request\n"
        "for attempt in (lambda: urllib.request.urlopen('http://example.com', timeout=3),\n"
        "                lambda: socket.create_connection(('1.1.1.1', 80), timeout=3),\n"
        f"                lambda: subprocess.run(['rm', '-rf', {str(precious)!r}])):\n"
        "    try:\n        attempt()\n    except Exception as e:\n        print('refused:', type(e).__name__)\n"
        + right[1]
    )
    submissions = root / "submissions"
    submissions.mkdir()
    made = {
        "right": right,
        "wrong": WRONG,
        "half": {n: right[n] for n in (1, 2, 3)},
        "untouched": {},
        "crashing": {1: "import os\nos._exit(1)", **{n: right[n] for n in (2, 3, 4, 5)}},
        "raising": {1: "1 / 0", **{n: right[n] for n in (2, 3, 4, 5)}},
        "endless": {1: "while True:\n    pass", **{n: right[n] for n in (2, 3, 4, 5)}},
        "deletes": {1: hostile_files, **{n: right[n] for n in (2, 3, 4, 5)}},
        "network": {1: hostile_net, **{n: right[n] for n in (2, 3, 4, 5)}},
    }
    for name, answers in made.items():
        nbformat.write(fill(student, answers), submissions / f"{LESSON}_{name}.ipynb")
    (submissions / f"{LESSON}_garbage.ipynb").write_text("{not json")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in submissions.iterdir()}
    out = root / "grades"
    start = time.perf_counter()
    assert grade.main([str(submissions), "--out", str(out), "--timeout", str(TIMEOUT), "--jobs", "2"]) == 0
    seconds = time.perf_counter() - start
    with open(out / "grades.csv", newline="", encoding="utf-8") as f:
        rows = {r["learner"].removeprefix(f"{LESSON}_"): r for r in csv.DictReader(f)}
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in submissions.iterdir()}
    return dict(rows=rows, seconds=seconds, precious=precious, same=before == after, out=out)


def verdicts(row) -> list[str]:
    return [row[k] for k in KEYS]


def test_the_table_has_a_row_per_submission_and_a_column_per_exercise(graded):
    assert len(graded["rows"]) == 10
    assert list(next(iter(graded["rows"].values())))[2 : 2 + len(KEYS)] == KEYS
    md = (graded["out"] / "grades.md").read_text(encoding="utf-8")
    assert md.count("\n| 00_") == 10 and "What the checks said:" in md


def test_right_wrong_half_and_untouched(graded):
    rows = graded["rows"]
    assert verdicts(rows["right"]) == ["passed"] * 5 and rows["right"]["status"] == "ran"
    assert verdicts(rows["wrong"]) == ["not yet"] * 5
    assert verdicts(rows["half"]) == ["passed"] * 3 + ["not yet"] * 2
    assert verdicts(rows["untouched"]) == ["not yet"] * 5 and rows["untouched"]["passed"] == "0"
    md = (graded["out"] / "grades.md").read_text(encoding="utf-8")
    assert "00_wrong, `l2_distance`: you return the mean of the squared differences" in md


def test_a_crash_a_raise_and_an_endless_loop_each_get_a_row_that_says_so(graded):
    rows = graded["rows"]
    assert rows["crashing"]["status"].startswith("the kernel died") and verdicts(rows["crashing"]) == ["not graded"] * 5
    assert rows["raising"]["status"] == "ran, 1 cell raised an error"
    assert verdicts(rows["raising"]) == ["not yet"] + ["passed"] * 4
    assert rows["endless"]["status"] == f"timed out after {TIMEOUT} s"
    assert verdicts(rows["endless"]) == ["not graded"] * 5
    assert rows["garbage"]["status"].startswith("not a notebook")


def test_hostile_submissions_are_refused_and_harm_nothing(graded):
    rows = graded["rows"]
    for name in ("deletes", "network"):
        assert verdicts(rows[name]) == ["passed"] * 5, rows[name]
        assert rows[name]["status"] == "ran"
    assert (graded["precious"] / "marks.txt").read_text() == "keep me\n"
    assert not (graded["precious"] / "owned.txt").exists()
    assert graded["same"], "the returned notebooks are graded on copies"
    executed = nbformat.read(graded["out"] / "executed" / "00_deletes.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert printed.count("refused: grading: ") == 3
    executed = nbformat.read(graded["out"] / "executed" / "00_network.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert printed.count("refused:") == 3


def test_grading_ten_submissions_takes_minutes_not_more(graded):
    assert graded["seconds"] < 360, graded["seconds"]


def test_list_names_every_check_and_what_it_reads():
    text = grade.list_checks()
    for x in classroom.exercise_table()[0]:
        assert x.check in text
    assert "l2_distance" in text and "EarlyStopping" in text


def test_lesson_of_a_submission(tmp_path):
    p = tmp_path / "alice.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('helpers.check("bce_loss")')])
    nbformat.write(nb, p)
    assert grade.lesson_of(p, None) == "01"
    assert grade.lesson_of(p, "03") == "03"
    assert grade.lesson_of(Path("04_x.ipynb"), None) == "04"


def test_a_missing_folder_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="is not a folder"):
        grade.main([str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match="holds no .ipynb"):
        grade.main([str(tmp_path)])
