"""Runs pytest several times in one process, each time against another copy of the `helpers`
package: `python tests/mutation_runner.py JOBS.json` prints {job: exit code} as JSON.

Used by tests/test_mutations.py. One process imports torch and fastai once for every planted bug;
before each run it forgets the `helpers` modules, the test modules and conftest, so that they are
imported again, from the copy that the job puts first on sys.path.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

import pytest


def forget_imports() -> None:
    for name in list(sys.modules):
        if name in ("helpers", "conftest") or name.startswith(("helpers.", "test_")):
            del sys.modules[name]


def run(package_dir: str, args: list[str]) -> tuple[int, str]:
    forget_imports()
    sys.path.insert(0, package_dir)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            code = pytest.main(["-q", "-x", "-p", "no:xdist", "-p", "no:cacheprovider", "-o", "addopts=", *args])
    finally:
        sys.path.remove(package_dir)
    return int(code), out.getvalue()[-3000:]


if __name__ == "__main__":
    jobs = json.loads(open(sys.argv[1]).read())
    results = {name: run(job["package_dir"], job["args"]) for name, job in jobs.items()}
    print(json.dumps(results))
