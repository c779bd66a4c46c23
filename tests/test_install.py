"""The Makefile's install: reruns that recover, the lanes' venvs and constraints, `make help`, versions.

The install steps run for real, in a temporary folder: the project's Makefile with a tiny
requirements.txt, a tiny project (an in-tree build backend, so nothing is fetched) and a local
folder of wheels instead of an index. Only the package names are made up; venv, pip and make are
the real ones.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "Makefile"

# A PEP 517 backend in a few lines: it builds the tiny project, and the tests use it to make wheels.
BACKEND = '''\
"""Builds wheels with nothing installed, so that pip needs no index to install the tiny project."""
import base64
import hashlib
import pathlib
import zipfile


def write_wheel(directory, name, version, files):
    """Write a pure-Python wheel holding `files` ({path in the wheel: text}); return its file name."""
    dist = f"{name}-{version}"
    files = dict(files)
    files[f"{dist}.dist-info/METADATA"] = f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n"
    wheel = "Wheel-Version: 1.0\\nGenerator: tiny\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    files[f"{dist}.dist-info/WHEEL"] = wheel
    lines = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        lines.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}.dist-info/RECORD"] = "\\n".join([*lines, f"{dist}.dist-info/RECORD,,"]) + "\\n"
    out = pathlib.Path(directory) / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return out.name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return write_wheel(wheel_directory, "tinyproject", "0.1", {"tinyproject.py": "OK = True\\n"})


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return write_wheel(wheel_directory, "tinyproject", "0.1", {"tinyproject.pth": str(pathlib.Path.cwd()) + "\\n"})
'''

PYPROJECT = """\
[build-system]
requires = []
build-backend = "tinybackend"
backend-path = ["."]
"""


def make(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the project's Makefile in `project`, with pip on the local wheel folder and nothing else.

    The variables of an outer make (when the suite itself runs under `make test-colab`, it passes
    VENV=.venv-colab down through the environment) are dropped, so they cannot leak into this one."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MAKE", "MFLAGS", "PIP_")) and k not in ("PYTHON", "VENV", "CONSTRAINTS")
    }
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(project / "wheels"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    result = subprocess.run(
        ["make", "--no-print-directory", "-f", str(MAKEFILE), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, f"make {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A tiny copy of the project's layout: requirements, constraints and a project to install."""
    (tmp_path / "tinybackend.py").write_text(BACKEND)
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "tinyproject.py").write_text("OK = True\n")  # installed in editable mode, like helpers/
    (tmp_path / "requirements.txt").write_text("tinydep>=1\n")
    (tmp_path / "requirements-dev.txt").write_text("-r requirements.txt\n")
    (tmp_path / "constraints").mkdir()
    (tmp_path / "constraints" / "ci.txt").write_text("tinydep==1.0\n")
    (tmp_path / "constraints" / "colab.txt").write_text("tinydep==1.0\n")
    (tmp_path / "wheels").mkdir()
    (tmp_path / "hub").mkdir()
    for name in ("package.json", "package-lock.json"):  # the hub's proxy, which `make test` installs with npm
        (tmp_path / "hub" / name).write_text("{}\n")
    return tmp_path


def add_wheel(project: Path, version: str) -> None:
    """Put `tinydep` `version` in the project's wheel folder (the stand-in for the package index)."""
    spec = importlib.util.spec_from_file_location("tinybackend", project / "tinybackend.py")
    backend = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(backend)
    backend.write_wheel(project / "wheels", "tinydep", version, {"tinydep.py": f"VERSION = {version!r}\n"})


def installed(project: Path, code: str) -> str:
    return subprocess.run(
        [str(project / ".venv/bin/python"), "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_every_interrupted_or_failed_step_is_finished_by_running_make_again(project: Path):
    py = sys.executable
    # A venv whose creation stopped before pip was in it: .venv/bin/python exists, and nothing works.
    subprocess.run([py, "-m", "venv", "--without-pip", str(project / ".venv")], check=True)
    # The package index cannot be reached: pip fails, and the stamp that says "installed" is not written.
    failed = make(project, "venv", f"PYTHON={py}", check=False)
    assert failed.returncode != 0
    assert "-m venv --clear .venv" in failed.stdout, "the broken venv should have been made again"
    assert "tinydep" in failed.stderr, failed.stderr
    assert not (project / ".venv/.installed").exists()
    assert installed(project, "import pip; print('ok')") == "ok"

    # The index is back: the same command finishes the job, in the venv it already made.
    add_wheel(project, "1.0")
    add_wheel(project, "2.0")
    done = make(project, "venv", f"PYTHON={py}")
    assert "-m venv" not in done.stdout, "a working venv should be kept"
    assert (project / ".venv/.installed").exists()
    assert (project / ".venv/.gitignore").read_text() == "*\n", "git should ignore the venv"
    assert installed(project, "import tinydep, tinyproject; print(tinydep.VERSION, tinyproject.OK)") == "1.0 True"
    assert make(project, "-q", "venv", check=False).returncode == 0, "a second run should have nothing to do"

    # The latest lane's settings, on the same venv: no constraints, everything upgraded.
    (project / ".venv/.installed").unlink()
    make(project, "venv", "CONSTRAINTS=", "PIP_FLAGS=--upgrade --upgrade-strategy eager")
    assert installed(project, "import tinydep; print(tinydep.VERSION)") == "2.0"


def test_a_python_older_than_3_11_is_refused_with_what_to_do(project: Path):
    old = project / "python3.9"
    old.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; sys.exit(1)'\n")  # reports an old version
    old.chmod(0o755)
    result = make(project, "venv", f"PYTHON={old}", check=False)
    assert result.returncode != 0
    assert "need Python 3.11 or newer" in result.stderr and "PYTHON=python3.12" in result.stderr, result.stderr
    assert not (project / ".venv").exists()


@pytest.mark.parametrize(
    ("target", "venv", "pip_args"),
    [
        ("test", ".venv", "-c constraints/ci.txt"),
        ("test-colab", ".venv-colab", "-c constraints/colab.txt"),
        ("test-latest", ".venv-latest", "--upgrade --upgrade-strategy eager"),
    ],
)
def test_each_lane_installs_its_own_venv_with_its_own_versions(project: Path, target: str, venv: str, pip_args: str):
    dry = make(project, "-n", target).stdout
    installs = [line for line in dry.splitlines() if " -m pip install" in line]
    assert installs, dry
    for line in installs:
        assert line.startswith(f"{venv}/bin/python -m pip install"), line
        assert pip_args in line, line
        if target == "test-latest":
            assert " -c " not in line, line
    assert f"OMP_NUM_THREADS=1 {venv}/bin/pytest -n auto" in dry


def makefile_targets() -> list[str]:
    return re.findall(r"^([a-z][a-z-]*):", MAKEFILE.read_text(), flags=re.M)


def test_make_help_lists_every_target_and_every_target_is_phony(project: Path):
    text = MAKEFILE.read_text()
    phony = set(re.search(r"^\.PHONY:((?:.*\\\n)*.*)$", text, flags=re.M).group(1).replace("\\\n", " ").split())
    targets = makefile_targets()
    lanes = {"test", "test-latest", "test-colab", "test-portability", "test-matrix", "test-cuda"}
    assert lanes | {"help", "constraints"} <= set(targets)
    assert set(targets) == phony, "every target names no file, so .PHONY should list exactly these"
    shown = {line.split()[1] for line in make(project, "help").stdout.splitlines()}
    assert shown == set(targets)


def test_versions_agree_across_pyproject_makefile_and_readme():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    minimum = re.fullmatch(r">=3\.(\d+)", pyproject["requires-python"])
    assert minimum, pyproject["requires-python"]
    minor = int(minimum.group(1))
    assert sys.version_info >= (3, minor)
    assert f"sys.version_info < (3, {minor})" in MAKEFILE.read_text()
    assert f"Python 3.{minor} or newer" in (ROOT / "README.md").read_text()
    assert any(d.startswith("filelock") for d in pyproject["dependencies"])


def pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==") for line in lines if line)


def test_the_constraints_pin_exact_versions_that_work_with_any_torch_build():
    ci = pins(ROOT / "constraints/ci.txt")
    for name in ("torch", "torchvision", "fastai", "fastcore", "numpy", "pytest", "nbval"):
        assert name in ci, f"constraints/ci.txt should pin {name}: run make constraints"
    assert not [v for v in ci.values() if "+" in v], "a local label (+cpu, +cu124) would tie the pins to one build"
    assert "sgd-helpers" not in ci, "the project itself is never pinned"
    colab = pins(ROOT / "constraints/colab.txt")
    assert "torch" not in colab and "torchvision" not in colab, "Colab keeps its own torch"
    assert {"fastai", "fastcore", "numpy", "matplotlib", "pandas", "pillow", "scipy", "scikit-learn"} <= set(colab)
