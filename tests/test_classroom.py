"""The classroom builds: Colab cells in sync, student copies without solutions, offline slide decks
and the static site. (The JupyterLab-in-a-browser test is tests/test_browser.py.)"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from tools import classroom, export

ROOT = Path(__file__).resolve().parents[1]
LESSONS = classroom.lessons()


def tagged(nb, tag):
    return [c for c in nb.cells if tag in c.metadata.get("tags", [])]


def output_blobs(cells) -> set[str]:
    """Every stored output (text, image, HTML) of these cells, as strings."""
    return {
        d if isinstance(d, str) else "".join(d)
        for c in cells
        for o in c.get("outputs", [])
        for d in [*o.get("data", {}).values(), o.get("text", "")]
        if d
    }


# ------------------------------------------------------------------------------- the manifest
def test_manifest_lists_every_lesson_notebook_and_nothing_else():
    assert classroom.manifest_problems() == []
    numbers = [lesson.number for lesson in classroom.manifest()]
    assert numbers == [f"{i:02d}" for i in range(len(numbers))] and len(numbers) >= 5, (
        "lessons are numbered 00, 01, ..."
    )


def write_manifest(path: Path, *rows: str) -> Path:
    path.write_text("lessons = [\n" + "".join(f"  {row},\n" for row in rows) + "]\n", encoding="utf-8")
    return path


def row(file: str, imports: str = '["torch"]') -> str:
    return f'{{ file = "{file}", imports = {imports}, teaches = "something" }}'


def test_manifest_problems_name_a_missing_line_and_a_missing_notebook(tmp_path):
    (tmp_path / "00_first.ipynb").write_text("{}")
    (tmp_path / "01_unlisted.ipynb").write_text("{}")
    (tmp_path / "_template.ipynb").write_text("{}")  # not a lesson: no number
    manifest = write_manifest(tmp_path / "lessons.toml", row("00_first.ipynb"), row("02_missing.ipynb"))
    problems = classroom.manifest_problems(tmp_path, manifest)
    assert problems == [
        "01_unlisted.ipynb is in notebooks/ but not in lessons.toml: add its line there",
        "02_missing.ipynb is in lessons.toml but not in notebooks/: add the notebook or remove the line",
    ]
    assert (
        classroom.manifest_problems(tmp_path, write_manifest(manifest, row("00_first.ipynb"), row("01_unlisted.ipynb")))
        == []
    )


@pytest.mark.parametrize(
    "rows, message",
    [
        ((row("01_b.ipynb"), row("00_a.ipynb")), "in the order of their numbers"),
        ((row("00_a.ipynb"), row("00_b.ipynb")), "once each"),
        ((row("0_a.ipynb"),), "two digits first"),
        ((row("00_Lesson.ipynb"),), "NN_lowercase_words"),
        ((row("00_a.ipynb", '["fastai"]'),), "imports must be"),
        (('{ file = "00_a.ipynb", imports = ["torch"] }',), "exactly file, teaches and imports"),
    ],
)
def test_a_malformed_manifest_is_refused_with_what_to_do(tmp_path, rows, message):
    with pytest.raises(SystemExit, match=message):
        classroom.manifest(write_manifest(tmp_path / "lessons.toml", *rows))


def test_lessons_and_lesson_come_from_the_manifest():
    listed = classroom.manifest()
    assert [p.name for p in LESSONS] == [lesson.file for lesson in listed]
    assert all(p.parent == classroom.NOTEBOOKS and p.is_file() for p in LESSONS)
    assert classroom.lesson(listed[-1].number) == LESSONS[-1]
    with pytest.raises(LookupError, match="no lesson numbered '99'"):
        classroom.lesson("99")


@pytest.mark.parametrize("lesson", classroom.manifest(), ids=lambda x: x.stem)
def test_lesson_imports_are_those_the_manifest_states(lesson):
    """A lesson listed without fastai starts in seconds: none of its cells may import fastai or fastbook
    (the Colab set-up cell installs fastai there, for the data; no lesson cell uses it). A lesson
    listed with fastai imports it."""
    nb = nbformat.read(classroom.NOTEBOOKS / lesson.file, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code" and c.get("id") != classroom.SETUP_ID)
    imports_fastai = bool(re.search(r"\b(from|import)\s+(fastai|fastbook)\b", code))
    assert imports_fastai == ("fastai" in lesson.imports), f"{lesson.file}: correct its imports in lessons.toml"


def test_readme_lesson_table_is_made_from_the_manifest():
    assert not classroom.sync_readme(check=True), "run `make sync` (python tools/classroom.py sync)"
    readme = classroom.README.read_text(encoding="utf-8")
    table = readme[readme.index(classroom.TABLE_START) : readme.index(classroom.TABLE_END)]
    for lesson in classroom.manifest():
        assert f"| [`{lesson.stem}`](notebooks/{lesson.file}) | {lesson.teaches} |" in table


def test_sync_readme_rewrites_only_the_table(tmp_path):
    readme = tmp_path / "README.md"
    listed = classroom.manifest()[:2]
    readme.write_text(
        f"# Title\n\n{classroom.TABLE_START}\n| stale |\n{classroom.TABLE_END}\n\nMore.\n", encoding="utf-8"
    )
    assert classroom.sync_readme(check=True, path=readme, listed=listed)
    assert "| stale |" in readme.read_text(encoding="utf-8"), "--check changes nothing"
    assert classroom.sync_readme(path=readme, listed=listed)
    assert not classroom.sync_readme(check=True, path=readme, listed=listed)
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\n") and text.endswith(f"{classroom.TABLE_END}\n\nMore.\n")
    assert text.count("](notebooks/") == 2 and "| stale |" not in text
    readme.write_text("no markers\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="put the lesson table between"):
        classroom.sync_readme(check=True, path=readme, listed=listed)


def test_no_lesson_file_name_outside_the_manifest_the_notebooks_and_the_readme_table():
    """The list of lessons lives in lessons.toml alone: no other file spells out a lesson's name."""
    if not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the project's files")
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = {lesson.stem for lesson in classroom.manifest()} | {Path(f).stem for f in classroom.lesson_files_on_disk()}
    found = []
    for name in sorted(set(files)):
        path = ROOT / name
        if name == "lessons.toml" or name.startswith("notebooks/") and name.endswith(".ipynb") or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images, archives
        if name == "README.md":
            text = text[: text.find(classroom.TABLE_START)] + text[text.find(classroom.TABLE_END) :]
        if name.startswith("helpers/") and export.is_generated(path):
            continue  # written by the export, whose header names the lesson to edit
        if spelled := [stem for stem in sorted(names) if stem in text]:
            found.append(f"{name}: {', '.join(spelled)}")
    assert not found, (
        "these files name lessons; read them from lessons.toml instead "
        "(tools.classroom.lessons(), lesson(NN)):\n" + "\n".join(found)
    )


# ------------------------------------------------------------------------------- the template
TEMPLATE_SECTIONS = ["## Summary", "## Jargon recap", "## Questionnaire", "## Exercises"]


def test_template_is_not_a_lesson_and_has_every_section_in_order():
    assert classroom.TEMPLATE.is_file()
    assert classroom.TEMPLATE.name not in classroom.lesson_files_on_disk()
    assert classroom.TEMPLATE not in LESSONS
    nb = nbformat.read(classroom.TEMPLATE, as_version=4)
    sources = [c.source for c in nb.cells]
    assert sources[0].startswith("# NN — ") and "you will learn" in sources[0]
    assert nb.cells[1].cell_type == "code" and "device = helpers.setup()" in sources[1]
    starts = [next(i for i, s in enumerate(sources) if s.startswith(head)) for head in TEMPLATE_SECTIONS]
    assert starts == sorted(starts), "summary, jargon recap, questionnaire, exercises"
    assert any(c.cell_type == "code" and c.source.startswith("# checkpoint") for c in nb.cells[: starts[0]])
    assert any("tolerance" in c.metadata for c in nb.cells if c.cell_type == "code")
    questionnaire = nb.cells[starts[2] + 1]
    assert "solution" in questionnaire.metadata.get("tags", []), "the questionnaire's answers are a solution cell"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.execution_count and not any(o.output_type == "error" for o in cell.outputs), "store a clean run"


def test_template_becomes_a_lesson_after_sync(tmp_path):
    """What CONTRIBUTING.md says to do: copy the template under a lesson's name, then sync."""
    lesson_path = tmp_path / "99_new_lesson.ipynb"
    shutil.copy(classroom.TEMPLATE, lesson_path)
    assert classroom.sync([lesson_path]) == [lesson_path.name]
    nb = nbformat.read(lesson_path, as_version=4)
    assert nb.cells[0].source == classroom.badge_source(lesson_path.name)
    assert nb.cells[1].source == classroom.setup_source() and nb.cells[2].source.startswith("# NN — ")
    assert nb.cells[3].metadata["slideshow"]["slide_type"] == "-"
    student = classroom.student_copy(nb)
    assert not tagged(student, "solution") and len(tagged(student, "exercise")) == 5  # questionnaire + 4 exercises


# ----------------------------------------------------------------------------------------- Colab
def test_every_lesson_is_in_sync():
    assert classroom.sync(LESSONS, check=True) == [], "run `make sync` (python tools/classroom.py sync)"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_lesson_opens_with_badge_and_the_one_setup_cell(path):
    nb = nbformat.read(path, as_version=4)
    badge, setup = nb.cells[0], nb.cells[1]
    repo = classroom.repository()
    colab = repo.replace("https://github.com/", "https://colab.research.google.com/github/")
    assert badge.cell_type == "markdown" and f"({colab}/blob/main/notebooks/{path.name})" in badge.source
    assert setup.cell_type == "code" and setup.source == classroom.setup_source()
    assert f"git+{repo}@main" in setup.source and classroom.fastai_requirement() in setup.source
    assert not setup.get("outputs"), "outside Colab the set-up cell prints nothing"
    assert nb.metadata["accelerator"] == "GPU" and nb.metadata["colab"]["gpuType"]
    assert nb.cells[2].source.startswith("# "), "the title comes right after the set-up"


def test_setup_cell_keeps_colab_torch_and_does_nothing_elsewhere():
    src = classroom.setup_source()
    ns: dict = {}
    exec(compile(src, "setup", "exec"), ns)  # not in Colab: nothing installed, nothing printed
    assert "subprocess" not in ns
    assert '"-c", "/tmp/keep-torch.txt"' in src and '("torch", "torchvision")' in src
    assert 'if "google.colab" in sys.modules:' in src


def test_sync_check_notices_an_edited_setup_cell(tmp_path):
    copy = tmp_path / LESSONS[0].name
    nb = nbformat.read(LESSONS[0], as_version=4)
    nb.cells[1].source += "\nprint('hello')"
    nbformat.write(nb, copy)
    assert classroom.sync([copy], check=True) == [copy.name]
    assert classroom.sync([copy]) == [copy.name]
    assert classroom.sync([copy], check=True) == []
    assert nbformat.read(copy, as_version=4).cells[1].source == classroom.setup_source()


def test_a_bad_repository_address_is_refused(monkeypatch):
    monkeypatch.setattr(
        classroom.tomllib, "loads", lambda _: {"project": {"urls": {"Repository": "git@github.com:a/b"}}}
    )
    with pytest.raises(SystemExit, match="https://github.com/OWNER/NAME"):
        classroom.repository()


# -------------------------------------------------------------------------------------- students
@pytest.mark.parametrize("path", [*LESSONS, classroom.TEMPLATE], ids=lambda p: p.stem)
def test_every_exercise_has_a_solution(path):
    nb = nbformat.read(path, as_version=4)
    start = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Exercises"))
    prompts = [i for i, c in enumerate(nb.cells) if i > start and re.match(r"\d+\. ", c.source)]
    assert len(prompts) >= 3, "a lesson ends with at least three exercises"
    for i in prompts:
        assert "solution" in nb.cells[i + 1].metadata.get("tags", []), nb.cells[i].source


def test_student_copies_leak_no_solution(tmp_path):
    paths = [*LESSONS, classroom.TEMPLATE]  # the template too: a lesson made from it starts leak-free
    written = classroom.students(tmp_path, paths)
    assert [p.name for p in written] == [p.name for p in paths]
    for teacher_path, student_path in zip(paths, written):
        teacher, student = nbformat.read(teacher_path, as_version=4), nbformat.read(student_path, as_version=4)
        nbformat.validate(student)
        solutions = tagged(teacher, "solution")
        assert solutions and not tagged(student, "solution")
        student_text = "\n".join(c.source for c in student.cells)
        student_outputs = nbformat.writes(student)
        lesson_lines = {line.strip() for c in teacher.cells if c not in solutions for line in c.source.splitlines()}
        for cell in solutions:
            for line in cell.source.splitlines():
                line = line.strip()
                if len(line) > 25 and line not in lesson_lines:  # a line of the solution's own
                    assert line not in student_text, f"{student_path.name} leaks: {line}"
            for blob in output_blobs([cell]) - output_blobs(c for c in teacher.cells if c not in solutions):
                if len(blob) >= 40:  # long enough to be the solution's own (not "True")
                    assert blob[:200] not in student_outputs, f"{student_path.name} leaks an output"
        # every exercise keeps its prompt and gets one empty cell to answer in
        blanks = tagged(student, "exercise")
        assert blanks and all(c.source.startswith("# Your answer here") and not c.outputs for c in blanks)
        teacher_rest = [c.source for c in teacher.cells if c not in solutions]
        student_rest = [c.source for c in student.cells if c not in blanks]
        intro = teacher_rest.index(next(t for t in teacher_rest if t.startswith("## Exercises")))
        assert "solution" in teacher_rest[intro] and student_rest[intro] == classroom.STUDENT_EXERCISES
        assert student_rest[:intro] + student_rest[intro + 1 :] == teacher_rest[:intro] + teacher_rest[intro + 1 :]
        student_prose = "\n".join(c.source for c in student.cells if c.cell_type == "markdown")
        assert "solution" not in student_prose.lower(), "the student copy's prose speaks of no solutions"


def test_student_copy_drops_a_run_of_solution_cells_into_one_blank():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("1. Do it.")])
    for src in ("x = 1", "x"):
        c = nbformat.v4.new_code_cell(src)
        c.metadata["tags"] = ["solution"]
        c.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "1"}, execution_count=1)]
        nb.cells.append(c)
    nb.cells.append(nbformat.v4.new_markdown_cell("2. Next."))
    out = classroom.student_copy(nb)
    assert [c.source for c in out.cells] == ["1. Do it.", "# Your answer here\n", "2. Next."]


# ------------------------------------------------------------------------------ slides and site
class Refs(HTMLParser):
    """Collects headings and every address a page would load (scripts, styles, images)."""

    def __init__(self):
        super().__init__()
        self.loads, self.headings, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.loads.append(a["src"])
        if tag == "link" and a.get("rel") == "stylesheet":
            self.loads.append(a["href"])
        if tag == "img":
            self.loads.append(a.get("src", ""))
        if re.fullmatch(r"h[1-3]", tag):
            self._in, self._text = tag, ""

    def handle_data(self, data):
        if self._in:
            self._text += data

    def handle_endtag(self, tag):
        if tag == self._in:
            self.headings.append(self._text.replace("¶", "").strip())
            self._in = None


def page_refs(path: Path) -> Refs:
    r = Refs()
    r.feed(path.read_text(encoding="utf-8"))
    return r


def lesson_headings(nb) -> list[str]:
    heads = []
    for c in nb.cells:
        if c.cell_type == "markdown" and "solution" not in c.metadata.get("tags", []):
            heads += [re.sub(r"[`*]", "", m) for m in re.findall(r"^#{1,3} (.+)$", c.source, re.M)]
    return heads


def assert_offline(page: Path, refs: Refs):
    for src in refs.loads:
        assert not re.match(r"(https?:)?//", src), f"{page.name} loads {src} from the internet"
        if not src.startswith("data:"):
            assert (page.parent / src.split("?")[0]).is_file(), f"{page.name}: {src} is missing"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    classroom.site(out, LESSONS)
    return out


def test_every_deck_builds_offline_with_the_lessons_headings(built_site):
    decks = sorted((built_site / "slides").glob("*.slides.html"))
    assert [d.name for d in decks] == [f"{p.stem}.slides.html" for p in LESSONS]
    for lesson, deck in zip(LESSONS, decks):
        refs = page_refs(deck)
        assert_offline(deck, refs)
        assert any(s.endswith("reveal.js/dist/reveal.js") for s in refs.loads)
        assert any("mathjax/MathJax.js" in s for s in refs.loads)
        page_html = deck.read_text(encoding="utf-8")
        heads = lesson_headings(nbformat.read(lesson, as_version=4))
        assert heads and all(h in refs.headings for h in heads), set(heads) - set(refs.headings)
        assert page_html.count("<section") > len(heads), "each heading starts a slide"
        assert "colab-badge.svg" not in page_html and "google.colab" not in page_html, "the Colab cells are skipped"
        assert '<aside class="notes">' in page_html, "solutions are speaker notes"


def test_site_has_an_index_in_lesson_order_and_offline_pages(built_site):
    index = built_site / "index.html"
    links = re.findall(r'<li><a href="([^"]+)">(.+?)</a>', index.read_text(encoding="utf-8"))
    assert [href for href, _ in links] == [f"{p.stem}.html" for p in LESSONS]
    for (href, name), lesson in zip(links, LESSONS):
        nb = nbformat.read(lesson, as_version=4)
        assert html.unescape(re.sub(r"</?code>", "`", name)) == classroom.title(nb)
        page = built_site / href
        refs = page_refs(page)
        assert_offline(page, refs)
        assert classroom.title(nb).replace("`", "") in " ".join(refs.headings).replace("`", "")
        stored_pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
        assert stored_pngs and sum(s.startswith("data:image/png") for s in refs.loads) == stored_pngs
        assert "google.colab" not in page.read_text(encoding="utf-8")


# ------------------------------------------------------------------------------ Binder / JupyterHub
def test_binder_postbuild_installs_helpers_and_provisions_the_data():
    import os
    import subprocess

    post = ROOT / "postBuild"
    assert os.access(post, os.X_OK), "repo2docker runs postBuild only if it is executable"
    subprocess.run(["bash", "-n", str(post)], check=True)
    commands = [line for line in post.read_text().splitlines() if line and not line.startswith("#")]
    assert commands == ["set -euo pipefail", "python -m pip install --no-deps -e .", "python -m helpers provision"]
    assert (ROOT / "requirements.txt").is_file() and (ROOT / "runtime.txt").read_text().startswith("python-3.")
