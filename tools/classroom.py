"""The lessons as a class uses them: Colab set-up, slides, student copies and a static site.

    python tools/classroom.py sync [--check]   # Colab cells, check cells, slide metadata; README's lesson table
    python tools/classroom.py slides  [OUT]    # one offline reveal.js deck per lesson   (build/slides)
    python tools/classroom.py students [OUT]   # copies of the lessons without solutions (build/students)
    python tools/classroom.py site    [OUT]    # every lesson as HTML, with an index     (build/site)

The lessons are those listed in `lessons.toml`, in its order; every command refuses to run while a
lesson notebook and that list disagree. `sync` is the only command that edits `notebooks/` and
`README.md` (the table between the `<!-- lessons -->` markers); it is idempotent, and `--check`
reports what it would change (a test runs it). It also puts a check cell after each exercise's
solution, as `exercises.toml` lists them (see that file). The repository address comes from one place,
`[project.urls]` in `pyproject.toml`, and the fastai range from `requirements.txt`.
"""

from __future__ import annotations

import argparse
import copy
import html
import re
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
MANIFEST = ROOT / "lessons.toml"
README = ROOT / "README.md"
TEMPLATE = NOTEBOOKS / "_template.ipynb"  # where a new lesson starts; not a lesson itself
LESSON_FILE = re.compile(r"(\d\d)_[a-z0-9_]+\.ipynb")
TEMPLATES = Path(__file__).resolve().parent / "templates"
BRANCH = "main"
SOLUTION = "solution"  # the tag of a cell that answers an exercise
CHECKPOINT = "# checkpoint"  # the first line of a cell that asserts what the lesson says (folded by sync)
CHECK = "check"  # the tag of the cell after an exercise's solution that checks the learner's answer
EXERCISES = Path(__file__).resolve().parent / "exercises.toml"
BADGE_ID, SETUP_ID = "colab-badge", "colab-setup"
COLAB_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}}


# ------------------------------------------------------------------------------- the manifest
@dataclass(frozen=True)
class Lesson:
    """One line of `lessons.toml`: the notebook's file name, what it teaches, what it imports."""

    file: str
    teaches: str
    imports: tuple[str, ...]

    @property
    def number(self) -> str:
        """The two digits that start its name: "00", "01", ..."""
        return self.file[:2]

    @property
    def stem(self) -> str:
        return self.file.removesuffix(".ipynb")


def manifest(path: Path = MANIFEST) -> list[Lesson]:
    """The lessons listed in `lessons.toml`, in teaching order, checked for form (not for files on disk:
    see `manifest_problems`)."""
    try:
        rows = tomllib.loads(path.read_text(encoding="utf-8"))["lessons"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as e:
        raise SystemExit(
            f"{path.name}: cannot read its `lessons = [...]` list ({e}); see the comment at its top"
        ) from e
    out: list[Lesson] = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or set(row) != {"file", "teaches", "imports"}:
            raise SystemExit(f"{path.name}, lesson {i}: give exactly file, teaches and imports, not {row!r}")
        if not LESSON_FILE.fullmatch(row["file"]):
            raise SystemExit(f"{path.name}: {row['file']!r} must be NN_lowercase_words.ipynb (two digits first)")
        imports = tuple(row["imports"])
        if "torch" not in imports or not set(imports) <= {"torch", "fastai"}:
            raise SystemExit(f'{path.name}: {row["file"]}: imports must be ["torch"] or ["torch", "fastai"]')
        out.append(Lesson(row["file"], " ".join(row["teaches"].split()), imports))
    numbers = [lesson.number for lesson in out]
    if numbers != sorted(set(numbers)):
        raise SystemExit(f"{path.name}: list the lessons once each, in the order of their numbers (got {numbers})")
    return out


def lesson_files_on_disk(folder: Path = NOTEBOOKS) -> list[str]:
    """Every notebook in `folder` whose name makes it a lesson (two digits and an underscore first)."""
    return sorted(p.name for p in folder.glob("[0-9][0-9]_*.ipynb"))


def manifest_problems(folder: Path = NOTEBOOKS, path: Path = MANIFEST) -> list[str]:
    """What keeps `lessons.toml` and the lesson notebooks in `folder` from matching one to one; empty if they do."""
    listed = [lesson.file for lesson in manifest(path)]
    on_disk = lesson_files_on_disk(folder)
    return [
        f"{name} is in notebooks/ but not in {path.name}: add its line there" for name in on_disk if name not in listed
    ] + [
        f"{name} is in {path.name} but not in notebooks/: add the notebook or remove the line"
        for name in listed
        if name not in on_disk
    ]


def lessons(folder: Path = NOTEBOOKS) -> list[Path]:
    """The lesson notebooks in teaching order, as `lessons.toml` lists them."""
    return [folder / lesson.file for lesson in manifest()]


def lesson(number: str) -> Path:
    """The lesson notebook whose name starts with `number` ("00", "04", ...), for the tests that need one."""
    found = [p for p in lessons() if p.name.startswith(f"{number}_")]
    if len(found) != 1:
        raise LookupError(f"lessons.toml lists no lesson numbered {number!r}")
    return found[0]


# ------------------------------------------------------------------------ README's lesson table
TABLE_START = "<!-- lessons: made from lessons.toml by `make sync`; edit that file, not this table -->"
TABLE_END = "<!-- /lessons -->"


# How long a lesson takes when an instructor walks a class through it: the prose read at a speaking pace,
# the code walked through line by line, and a moment to run each cell and look at what it shows. The
# exercises (and their solutions) are left for after the session.
PROSE_WORDS_PER_MINUTE = 130
CODE_WORDS_PER_MINUTE = 50
SECONDS_PER_CELL = 20


def live_minutes(path: Path) -> int:
    """A lesson's length taught live, estimated from what is on screen (see the constants above)."""
    nb = nbformat.read(path, as_version=4)
    cells = [
        c for c in nb.cells if c.get("id") not in (BADGE_ID, SETUP_ID) and SOLUTION not in c.metadata.get("tags", [])
    ]
    prose = sum(len(c.source.split()) for c in cells if c.cell_type == "markdown")
    code = [c for c in cells if c.cell_type == "code"]
    minutes = prose / PROSE_WORDS_PER_MINUTE + sum(len(c.source.split()) for c in code) / CODE_WORDS_PER_MINUTE
    return round(minutes + len(code) * SECONDS_PER_CELL / 60)


def lesson_table(listed: list[Lesson], folder: Path = NOTEBOOKS) -> str:
    """The README's table of lessons, one row per line of the manifest, with each lesson's live length."""
    rows = [
        f"| [`{x.stem}`](notebooks/{x.file}) | {x.teaches} | {', '.join(x.imports)} | "
        f"{live_minutes(folder / x.file) if (folder / x.file).exists() else '?'} |"
        for x in listed
    ]
    return "\n".join(["| notebook | what it teaches | imports | minutes |", "| --- | --- | --- | --- |", *rows])


def synced_readme(text: str, listed: list[Lesson]) -> str:
    """`text` with the table between the lesson markers made anew from `listed`."""
    start, end = text.find(TABLE_START), text.find(TABLE_END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md: put the lesson table between the lines\n{TABLE_START}\n{TABLE_END}")
    return text[: start + len(TABLE_START)] + "\n" + lesson_table(listed) + "\n" + text[end:]


def sync_readme(check: bool = False, path: Path = README, listed: list[Lesson] | None = None) -> bool:
    """Bring the README's lesson table in line with the manifest; True if it was (check=True: is) out of line."""
    text = path.read_text(encoding="utf-8")
    new = synced_readme(text, manifest() if listed is None else listed)
    if new != text and not check:
        path.write_text(new, encoding="utf-8")
    return new != text


def repository() -> str:
    """The GitHub address of this collection, from `[project.urls] Repository` in pyproject.toml."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    url = meta["project"]["urls"]["Repository"].rstrip("/")
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise SystemExit(
            f"pyproject.toml: [project.urls] Repository must be https://github.com/OWNER/NAME, not {url!r}"
        )
    return url


def fastai_requirement() -> str:
    """The fastai line of requirements.txt, so Colab installs the same range as everyone else."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if re.match(r"fastai\b", line.strip()):
            return line.split("#")[0].strip()
    raise SystemExit("requirements.txt has no fastai line")


def badge_source(name: str) -> str:
    url = repository().replace("https://github.com/", "https://colab.research.google.com/github/")
    return (
        f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
        f"({url}/blob/{BRANCH}/notebooks/{name})"
    )


def setup_source() -> str:
    """The set-up cell, identical in every lesson. Outside Colab it does nothing and prints nothing."""
    return f'''\
# Google Colab only: install what Colab lacks, keeping its own PyTorch. Elsewhere this does nothing.
import sys

if "google.colab" in sys.modules:
    import subprocess
    from importlib.metadata import version

    keep = "".join(f"{{p}}=={{version(p)}}\\n" for p in ("torch", "torchvision"))
    open("/tmp/keep-torch.txt", "w").write(keep)
    helpers = "sgd-helpers @ git+{repository()}@{BRANCH}"
    pip = [sys.executable, "-m", "pip", "install", "-q", "-c", "/tmp/keep-torch.txt", "{fastai_requirement()}", helpers]
    subprocess.run(pip, check=True)'''


def _heading_level(cell) -> int:
    if cell.cell_type != "markdown":
        return 0
    m = re.match(r"(#{1,6}) ", cell.source)
    return len(m.group(1)) if m else 0


def _split_at_headings(cells: list) -> list:
    """A markdown cell with a heading below its first line becomes two cells, so a heading starts a slide."""
    out = []
    for cell in cells:
        parts = re.split(r"\n\n(?=#{1,3} )", cell.source) if cell.cell_type == "markdown" else [cell.source]
        for i, part in enumerate(parts):
            c = copy.deepcopy(cell) if i == 0 else nbformat.v4.new_markdown_cell(metadata=copy.deepcopy(cell.metadata))
            c.source = part
            out.append(c)
    return out


def _slide_types(cells: list) -> list[str]:
    """Headings start slides (### a sub-slide); a second code cell on a slide starts a sub-slide;
    the Colab cells are skipped; solutions become speaker notes."""
    types, has_code = [], False
    for cell in cells:
        level = _heading_level(cell)
        if cell.get("id") in (BADGE_ID, SETUP_ID):
            kind = "skip"
        elif SOLUTION in cell.metadata.get("tags", []):
            kind = "notes"
        elif level in (1, 2):
            kind, has_code = "slide", False
        elif level >= 3:
            kind, has_code = "subslide", False
        elif cell.cell_type == "code":
            kind = "subslide" if has_code else "-"
            has_code = True
        else:
            kind = "-"
        types.append(kind)
    return types


# ---------------------------------------------------------------------------------- exercise checks
@dataclass(frozen=True)
class Exercise:
    """One row of `exercises.toml`: exercise `number` of lesson `lesson` is checked by `check`."""

    lesson: str
    number: int
    check: str
    answer: str
    edits: tuple[tuple[str, str], ...] = ()
    planned: bool = False

    @property
    def cell_id(self) -> str:
        return f"check-{self.check.replace('_', '-')}"

    @property
    def source(self) -> str:
        return f'helpers.check("{self.check}")'


def exercise_table(path: Path = EXERCISES) -> tuple[list[Exercise], list[str]]:
    """The rows of `exercises.toml`, checked for form, and its `pending` lessons."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise SystemExit(f"{path.name}: cannot read it ({e})") from e
    rows, seen, keys = [], set(), set()
    for i, row in enumerate(data.get("exercise", [])):
        extra = set(row) - {"lesson", "number", "check", "answer", "edits", "planned"}
        if extra or not {"lesson", "number", "check", "answer"} <= set(row):
            raise SystemExit(f"{path.name}, row {i}: give lesson, number, check, answer (and edits, planned): {row!r}")
        if not re.fullmatch(r"\d\d", str(row["lesson"])) or not isinstance(row["number"], int):
            raise SystemExit(f"{path.name}, row {i}: lesson is two digits as text, number an integer: {row!r}")
        where = (row["lesson"], row["number"])
        if where in seen or row["check"] in keys:
            raise SystemExit(f"{path.name}: lesson {where[0]} exercise {where[1]} or check {row['check']!r} twice")
        seen.add(where)
        keys.add(row["check"])
        edits = tuple((e["old"], e["new"]) for e in row.get("edits", []))
        rows.append(
            Exercise(
                row["lesson"], row["number"], row["check"], row["answer"].strip(), edits, row.get("planned", False)
            )
        )
    return rows, list(data.get("pending", []))


def exercise_prompts(cells: list) -> dict[int, tuple[int, int]]:
    """Exercise number -> (index of its prompt cell, index after its run of solution cells)."""
    start = next((i for i, c in enumerate(cells) if c.source.startswith("## Exercises")), None)
    found: dict[int, tuple[int, int]] = {}
    if start is None:
        return found
    for i in range(start + 1, len(cells)):
        m = re.match(r"(\d+)\. ", cells[i].source)
        if cells[i].cell_type == "markdown" and m and SOLUTION not in cells[i].metadata.get("tags", []):
            end = i + 1
            while end < len(cells) and SOLUTION in cells[end].metadata.get("tags", []):
                end += 1
            found[int(m.group(1))] = (i, end)
    return found


def with_checks(cells: list, number: str, table: list[Exercise] | None = None) -> list:
    """`cells` of lesson `number` with each listed exercise's answer sentence, solution edits and
    check cell (a check cell whose source did not change keeps its stored output)."""
    rows = [x for x in (exercise_table()[0] if table is None else table) if x.lesson == number and not x.planned]
    old = {c.get("id"): c for c in cells if CHECK in c.metadata.get("tags", [])}
    cells = [c for c in cells if CHECK not in c.metadata.get("tags", [])]
    prompts = exercise_prompts(cells)
    for x in sorted(rows, key=lambda x: -prompts.get(x.number, (0, 0))[1]):
        if x.number not in prompts:
            raise SystemExit(f"lesson {number} has no exercise {x.number}: correct its row in {EXERCISES.name}")
        i, end = prompts[x.number]
        if not cells[i].source.rstrip().endswith(x.answer):
            cells[i].source = cells[i].source.rstrip() + "\n" + x.answer
        for before, after in x.edits:
            if any(after in c.source for c in cells[i + 1 : end]):
                continue
            hits = [c for c in cells[i + 1 : end] if before in c.source]
            if len(hits) != 1:
                raise SystemExit(
                    f"lesson {number}, exercise {x.number}: its solution no longer contains {before!r} once; "
                    f"correct the edit in {EXERCISES.name}"
                )
            hits[0].source = hits[0].source.replace(before, after, 1)
        cell = old.get(x.cell_id)
        if cell is None or cell.source != x.source:
            cell = nbformat.v4.new_code_cell(x.source)
            cell.id = x.cell_id
        cell.metadata["tags"] = [CHECK]
        cells.insert(end, cell)
    return cells


def synced(nb, name: str):
    """A copy of `nb` with the badge and set-up cells first, the exercises' check cells, Colab metadata
    and slide metadata."""
    nb = copy.deepcopy(nb)
    cells = [c for c in nb.cells if c.get("id") not in (BADGE_ID, SETUP_ID)]
    cells = with_checks(cells, name[:2])
    badge = nbformat.v4.new_markdown_cell(badge_source(name))
    badge.id = BADGE_ID
    setup = next((c for c in nb.cells if c.get("id") == SETUP_ID), None) or nbformat.v4.new_code_cell()
    if setup.source != setup_source():  # otherwise keep its stored run (count, timing) as it is
        setup.source, setup.execution_count = setup_source(), None
    setup.id, setup.outputs = SETUP_ID, []
    cells = _split_at_headings([badge, setup] + cells)
    for cell, kind in zip(cells, _slide_types(cells)):
        cell.metadata["slideshow"] = {"slide_type": kind}
        if cell.cell_type == "code" and cell.source.lstrip().startswith(CHECKPOINT):
            cell.metadata.setdefault("jupyter", {})["source_hidden"] = True  # folded: a learner may skip it
    nb.cells = cells
    nb.metadata.update(copy.deepcopy(COLAB_METADATA))
    return nb


def sync(paths: list[Path], check: bool = False) -> list[str]:
    """Bring every lesson in line; with check=True, only list the lessons that are out of line."""
    stale = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        new = synced(nb, path.name)
        if new != nb:
            stale.append(path.name)
            if not check:
                nbformat.validate(new)
                nbformat.write(new, path)
    return stale


# ----------------------------------------------------------------------------------- students
STUDENT_EXERCISES = (
    "## Exercises\n\nAnswer each exercise in the empty cell after it and run that cell; then run the cell "
    "`helpers.check(...)` below it, which tests your answer on cases you do not see and says what is "
    'still wrong. Before you answer, it says "not yet".'
)


def not_yet_output(source: str):
    """The output a check cell prints in a student copy run as it is (nothing answered yet)."""
    from helpers import checks

    key = re.fullmatch(r'helpers\.check\("([\w]+)"\)', source.strip())
    if key is None:
        raise SystemExit(f'a cell tagged {CHECK!r} must be helpers.check("key"), not {source!r}')
    return nbformat.v4.new_output("stream", name="stdout", text=checks.not_yet_message(key.group(1)) + "\n")


def student_copy(nb):
    """The lesson without its solutions: each run of solution cells becomes one empty code cell,
    each check cell shows what it prints before the learner answers ("not yet"), and the
    exercises' introduction no longer speaks of solutions."""
    nb = copy.deepcopy(nb)
    cells, in_solution = [], False
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("## Exercises"):
            cell.source = STUDENT_EXERCISES
        if CHECK in cell.metadata.get("tags", []):
            cell.outputs = [not_yet_output(cell.source)]
        if SOLUTION in cell.metadata.get("tags", []):
            if not in_solution:
                blank = nbformat.v4.new_code_cell("# Your answer here\n")
                blank.metadata["tags"] = ["exercise"]
                cells.append(blank)
            in_solution = True
        else:
            cells.append(cell)
            in_solution = False
    nb.cells = cells
    return nb


def students(out: Path, paths: list[Path]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        nb = student_copy(nbformat.read(path, as_version=4))
        nbformat.validate(nb)
        nbformat.write(nb, out / path.name)
        written.append(out / path.name)
    return written


# ------------------------------------------------------------------------------ slides and site
def _copy_assets(out: Path, reveal: bool) -> None:
    """reveal.js (from the sphinx-revealjs package) and MathJax 2 (from jupyter-server-mathjax),
    copied beside the pages so that nothing is fetched from the internet."""
    try:
        import jupyter_server_mathjax
        import sphinx_revealjs
    except ImportError as e:  # pragma: no cover - the message is the point
        raise SystemExit(
            f"{e.name} is missing: install requirements-dev.txt (`make test` does it first, or "
            "`.venv/bin/python -m pip install -r requirements-dev.txt`)"
        ) from e
    assets = out / "assets"
    shutil.copytree(Path(jupyter_server_mathjax.__file__).parent / "static", assets / "mathjax", dirs_exist_ok=True)
    if reveal:
        src = Path(sphinx_revealjs.__file__).parent / "_static" / "revealjs"
        for part in ("dist", "plugin/notes"):
            shutil.copytree(src / part, assets / "reveal.js" / part, dirs_exist_ok=True)
        shutil.copy2(src / "LICENSE", assets / "reveal.js" / "LICENSE")


MATHJAX = "assets/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def _exporter(kind: str):
    from nbconvert import HTMLExporter, SlidesExporter

    if kind == "slides":
        exp = SlidesExporter(template_name="offline_reveal", extra_template_basedirs=[str(TEMPLATES)])
        exp.reveal_url_prefix = "assets/reveal.js"
        exp.reveal_theme = "white"  # its fonts ship with it ("simple" fetches Google Fonts)
        exp.reveal_transition = "none"
    else:
        exp = HTMLExporter(template_name="offline_lab", extra_template_basedirs=[str(TEMPLATES)])
    exp.mathjax_url = MATHJAX
    exp.exclude_input_prompt = exp.exclude_output_prompt = kind == "slides"
    return exp


def title(nb) -> str:
    """The lesson's title: its first level-1 heading, without the '#'."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.splitlines()[0][2:].strip()
    return ""


def _without_colab_cells(nb):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.get("id") not in (BADGE_ID, SETUP_ID)]
    return nb


def slides(out: Path, paths: list[Path]) -> list[Path]:
    """One reveal.js deck per lesson, `<name>.slides.html`, working offline from `out`."""
    out.mkdir(parents=True, exist_ok=True)
    _copy_assets(out, reveal=True)
    exp, written = _exporter("slides"), []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        body, _ = exp.from_notebook_node(nb, resources={"metadata": {"name": title(nb)}})
        target = out / f"{path.stem}.slides.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
    return written


def site(out: Path, paths: list[Path]) -> list[Path]:
    """Every lesson, as executed and stored, as a page beside its deck; `index.html` lists them in order."""
    out.mkdir(parents=True, exist_ok=True)
    _copy_assets(out, reveal=False)
    slides(out / "slides", paths)
    exp, written, items = _exporter("site"), [], []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        name = title(nb)
        resources = {"metadata": {"name": name}, "sgd_slides": f"slides/{path.stem}.slides.html"}
        body, _ = exp.from_notebook_node(_without_colab_cells(nb), resources=resources)
        target = out / f"{path.stem}.html"
        target.write_text(body, encoding="utf-8")
        written.append(target)
        label = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(name))
        items.append(
            f'  <li><a href="{path.stem}.html">{label}</a> · <a href="slides/{path.stem}.slides.html">slides</a></li>'
        )
    index = out / "index.html"
    index.write_text(
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8"><title>SGD, from scratch to fastai</title>\n'
        "<style>body{font-family:sans-serif;max-width:46em;margin:3em auto;line-height:1.5}li{margin:.4em 0}</style>\n"
        "</head>\n<body>\n<h1>SGD, from scratch to fastai</h1>\n"
        "<p>The lessons in order, as executed (outputs included). Run them yourself in JupyterLab or Colab.</p>\n"
        "<ol>\n" + "\n".join(items) + "\n</ol>\n</body>\n</html>\n",
        encoding="utf-8",
    )
    return [index] + written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=["sync", "slides", "students", "site"])
    p.add_argument("out", nargs="?", type=Path, help="output folder (default build/<command>)")
    p.add_argument("--check", action="store_true", help="sync: report, change nothing, exit 1 if out of line")
    args = p.parse_args(argv)
    problems = manifest_problems()
    if problems:
        raise SystemExit("lessons.toml and notebooks/ disagree:\n" + "\n".join(problems))
    paths = lessons()
    if args.command == "sync":
        stale = sync(paths, check=args.check) + (["README.md"] if sync_readme(check=args.check) else [])
        verb = "out of line" if args.check else "updated"
        print("\n".join(f"{name}: {verb}" for name in stale) or "all lessons in line")
        return 1 if (args.check and stale) else 0
    out = args.out or ROOT / "build" / args.command
    written = {"slides": slides, "students": students, "site": site}[args.command](out, paths)
    print("\n".join(str(w) for w in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
