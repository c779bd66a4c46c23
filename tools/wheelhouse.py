"""Build a wheelhouse to run the test suite on an air-gapped machine whose Python already has torch.

    .venv/bin/python tools/wheelhouse.py --python-version 3.12 --have target-packages.txt --dest wheelhouse

It takes what the suite needs (fastai, nbval, pytest-xdist, nbclient and their dependencies, at the
versions installed in this project's .venv, so run `make venv` first), leaves out torch and
torchvision (the target has its own build) and spaCy (fastai imports it only for text models), and
leaves out every package named in `--have` (the target's `python3 -m pip list --format=freeze`, or
one name per line). Wheels are downloaded for the target's Python version and platform.

On the target, from the project's root, with the two MNIST archives in ./archives:

    python3 -m pip install --no-index --no-deps --target /tmp/site wheelhouse/*.whl
    export PYTHONPATH=/tmp/site:$PWD SGD_ARCHIVES=$PWD/archives SGD_DATA=/tmp/sgd-data
    python3 -m helpers provision
    OMP_NUM_THREADS=1 python3 -m pytest -n 8 --dist loadfile
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOTS = ["fastai", "nbval", "pytest-xdist", "nbclient", "matplotlib", "numpy", "pillow"]
NEVER = {"torch", "torchvision", "spacy", "nbdev"}
PLATFORMS = [
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux_2_5_x86_64",
    "manylinux1_x86_64",
]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(roots: list[str], skip: set[str]) -> dict[str, str]:
    """Installed distributions needed by `roots` (not their extras), name -> version."""
    found: dict[str, str] = {}
    todo = [norm(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in found or name in skip:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            sys.exit(f"{name} is not installed in this environment: run `make venv` first")
        found[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):  # no extras, no other platforms
                todo.append(norm(req.name))
    return found


def read_have(path: Path | None) -> set[str]:
    if path is None:
        return set()
    names = re.split(r"[\s,]+", path.read_text())
    return {norm(re.split(r"[=<>@ ]", n, maxsplit=1)[0]) for n in names if n.strip()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python-version", required=True, help="the target's Python, e.g. 3.12")
    ap.add_argument("--platform", nargs="+", default=PLATFORMS, help="pip platform tags the target accepts")
    ap.add_argument("--have", type=Path, help="packages the target already has (pip freeze output or names)")
    ap.add_argument("--dest", type=Path, default=Path("wheelhouse"))
    args = ap.parse_args()
    need = closure(ROOTS, NEVER | read_have(args.have))
    pins = [f"{n}=={v}" for n, v in sorted(need.items())]
    print(f"{len(pins)} wheels: {' '.join(pins)}")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        args.python_version,
        "-d",
        str(args.dest),
    ]
    for p in args.platform:
        cmd += ["--platform", p]
    subprocess.run(cmd + pins, check=True)


if __name__ == "__main__":
    main()
