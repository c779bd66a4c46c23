"""Wall time of each lesson under nbval, and of the whole suite, one at a time against all cores.

    .venv/bin/python benchmarks/bench_notebooks.py

Runs, with `OMP_NUM_THREADS=1` as `make test` does:
1. each lesson alone, as lessons.toml lists them (`pytest -p no:xdist notebooks/NN_name.ipynb`), and their sum;
2. all notebooks in one pytest process, one after another;
3. all notebooks on every core (`-n auto --dist loadfile`);
4. the notebooks and the unit tests on every core (the suite without the browser and site builds);
5. the whole suite as `make test` runs it.
Each line is one pytest run: its own count of passed tests and its wall time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: make `tools` importable
from tools.classroom import lessons  # noqa: E402  (the lessons as lessons.toml lists them)


def pytest(*args: str) -> tuple[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    last = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-200:]
    if r.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{r.stdout[-3000:]}")
    return re.sub(r"=+", "", last).strip(), wall


def main() -> None:
    paths = lessons()
    notebooks = [str(p.relative_to(ROOT)) for p in paths]
    print(f"{os.cpu_count()} cores; OMP_NUM_THREADS=1")
    total = 0.0
    for path, nb in zip(paths, notebooks):
        summary, wall = pytest("-p", "no:xdist", nb)
        total += wall
        print(f"{'lesson ' + path.name[:2]:45s} {wall:6.1f} s   ({summary})")
    print(f"{'sum of the notebooks one by one':45s} {total:6.1f} s")
    summary, wall = pytest("-p", "no:xdist", *notebooks)
    print(f"{'all notebooks, one process, in turn':45s} {wall:6.1f} s   ({summary})")
    summary, wall_par = pytest("-n", "auto", "--dist", "loadfile", "--no-loadscope-reorder", *notebooks)
    print(f"{'all notebooks, -n auto --dist loadfile':45s} {wall_par:6.1f} s   ({summary})")
    print(f"{'ratio, in turn / on all cores':45s} {wall / wall_par:6.2f}x")
    summary, wall = pytest(
        "-n",
        "auto",
        "--dist",
        "loadfile",
        "--no-loadscope-reorder",
        "--ignore",
        "tests/test_browser.py",
        "--ignore",
        "tests/test_classroom.py",
    )
    print(f"{'notebooks + unit tests, -n auto':45s} {wall:6.1f} s   ({summary})")
    summary, wall = pytest("-n", "auto", "--dist", "loadfile", "--no-loadscope-reorder")
    print(f"{'whole suite (make test)':45s} {wall:6.1f} s   ({summary})")


if __name__ == "__main__":
    main()
