"""One source: the modules of `helpers` that lessons build are exported from the lessons (nbdev), and
a lesson uses only what an earlier lesson built (tools/export.py). Both hold for the lessons as they
are, and each check fails when it should: on a hand edit of a generated module, and on a lesson that
imports a name no earlier lesson exports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tools import export

ROOT = export.ROOT
BUILT = {
    "sgd": "01",
    "basic_optim": "02",
    "mnist": "04",
    "learner": "05",
    "optim": "06",
    "schedules": "07",
    "cnn": "08",
}


@pytest.fixture(scope="module")
def made() -> dict[str, str]:
    return export.exported()


def test_every_lesson_built_module_is_exactly_what_its_lesson_exports(made):
    assert set(made) == set(BUILT)
    for name, number in BUILT.items():
        assert f"File to edit: ../notebooks/{number}_" in made[name]
    assert export.module_problems(made=made) == []


def test_every_lesson_imports_only_what_an_earlier_lesson_built(made):
    assert export.import_problems(made=made) == []


def project_copy(tmp_path: Path) -> Path:
    """What the checks read: the manifest, the lessons and the package."""
    shutil.copy(ROOT / "lessons.toml", tmp_path / "lessons.toml")
    skip = shutil.ignore_patterns("models", ".ipynb_checkpoints", "__pycache__")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks", ignore=skip)
    shutil.copytree(ROOT / "helpers", tmp_path / "helpers", ignore=skip)
    return tmp_path


def test_a_hand_edit_a_missing_or_a_stray_module_is_caught(made, tmp_path):
    root = project_copy(tmp_path)
    assert export.module_problems(root, made) == []
    learner = root / "helpers" / "learner.py"
    learner.write_text(learner.read_text().replace("order = -10", "order = 10"))
    (root / "helpers" / "cnn.py").unlink()
    (root / "helpers" / "tricks.py").write_text("def shortcut(): ...\n")
    problems = [str(p) for p in export.module_problems(root, made)]
    assert any(p.startswith("helpers/learner.py: differs from its lesson") and "make export" in p for p in problems)
    assert "helpers/cnn.py: is missing: run make export" in problems
    assert any(p.startswith("helpers/tricks.py: is neither exported by a lesson") for p in problems)
    assert len(problems) == 3


def add_cell(notebook: Path, source: str) -> None:
    nb = json.loads(notebook.read_text())
    nb["cells"].append({"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": source})
    notebook.write_text(json.dumps(nb))


@pytest.mark.parametrize(
    "lesson, source, says",
    [
        ("02", "from helpers.learner import Learner", "uses helpers.learner, which 05_"),
        ("05", "from helpers.learner import Learner", "uses helpers.learner, which 05_"),  # its own module
        ("03", "from helpers.sgd import shortcut", "imports shortcut from helpers.sgd, and 01_"),
        ("04", "import helpers.tricks", "uses helpers.tricks, which no lesson builds"),
        ("00", "w = helpers.sgd.init_params(3)", "uses helpers.sgd, which 01_"),
        ("06", "from helpers import schedules", "uses helpers.schedules, which 07_"),
    ],
)
def test_a_lesson_using_what_no_earlier_lesson_built_is_caught(made, tmp_path, lesson, source, says):
    root = project_copy(tmp_path)
    notebook = next((root / "notebooks").glob(f"{lesson}_*.ipynb"))
    add_cell(notebook, source)
    problems = [str(p) for p in export.import_problems(root, made)]
    assert len(problems) == 1 and problems[0].startswith(notebook.name) and says in problems[0], problems


def test_infrastructure_is_free_to_use(made, tmp_path):
    root = project_copy(tmp_path)
    add_cell(next((root / "notebooks").glob("00_*.ipynb")), "from helpers.data import tensor_loader\nhelpers.setup()")
    assert export.import_problems(root, made) == []


def test_write_regenerates_what_is_missing_or_edited_and_nothing_else(tmp_path):
    root = project_copy(tmp_path)
    (root / "helpers" / "optim.py").unlink()
    sgd = root / "helpers" / "sgd.py"
    sgd.write_text(sgd.read_text() + "\n# a hand edit\n")
    assert sorted(export.write(root)) == ["wrote helpers/optim.py", "wrote helpers/sgd.py"]
    assert export.write(root) == []
    assert (root / "helpers" / "sgd.py").read_text() == (ROOT / "helpers" / "sgd.py").read_text()


def test_ruff_leaves_the_generated_modules_alone():
    """nbdev writes them from cells that ruff checks in the notebooks; formatting them would undo the export."""
    import tomllib

    excluded = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["extend-exclude"]
    assert {p for p in excluded if p.startswith("helpers/")} == {f"helpers/{name}.py" for name in BUILT}
