"""The portability matrix: every lesson under nbval in the configurations learners' machines differ by.

    python -m tools.matrix                      # `make test-matrix`
    python -m tools.matrix --lessons 01 04 --columns threads=1 kernel=avx2
    python -m tools.matrix --full               # every thread count x every CPU kernel set, too

A column is one configuration of the same CPU: torch's default thread count, 1, 2 or 4 threads
(`OMP_NUM_THREADS`), torch's generic, AVX2 or AVX-512 kernels (`ATEN_CPU_CAPABILITY`, where the CPU
has them), and `MPLBACKEND=Agg` as servers set it; plus `cuda` when a CUDA GPU is at hand. Each
column is one `pytest --nbval` run of the lessons (the project's own options, so stored figures are
compared within their cells' tolerances); the grid shows which lessons passed, and the cells that
failed. The exit status is 0 only when every cell passed everywhere.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from tools.classroom import lessons as all_lessons

ROOT = Path(__file__).resolve().parents[1]


def cpu_kernels() -> list[str]:
    """The values of ATEN_CPU_CAPABILITY this CPU can run."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return ["default"] + ["avx2"] * ("avx2" in flags) + ["avx512"] * ("avx512f" in flags)


def has_cuda() -> bool:
    code = "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def columns(full: bool) -> dict[str, dict[str, str | None]]:
    """Column name -> environment changes (None: unset). CPU columns force the CPU."""
    cpu = {"SGD_DEVICE": "cpu"}
    cols: dict[str, dict[str, str | None]] = {"threads=auto": {**cpu, "OMP_NUM_THREADS": None}}
    for t in (1, 2, 4):
        cols[f"threads={t}"] = {**cpu, "OMP_NUM_THREADS": str(t)}
    for k in cpu_kernels():
        cols[f"kernel={k}"] = {**cpu, "OMP_NUM_THREADS": None, "ATEN_CPU_CAPABILITY": k}
    if full:
        for t in (1, 2, 4):
            for k in cpu_kernels():
                cols[f"threads={t},kernel={k}"] = {**cpu, "OMP_NUM_THREADS": str(t), "ATEN_CPU_CAPABILITY": k}
    cols["MPLBACKEND=Agg"] = {**cpu, "OMP_NUM_THREADS": None, "MPLBACKEND": "Agg"}
    if has_cuda():
        cols["cuda"] = {"SGD_DEVICE": "cuda", "OMP_NUM_THREADS": None}
    return cols


def run_column(env_changes: dict[str, str | None], lessons: list[Path], workers: int) -> dict[str, list[str]]:
    """One nbval run of the lessons; lesson name -> the cells that failed (['error'] if it did not run)."""
    # Idle OpenMP threads sleep instead of spinning: with several threads per worker on a few cores,
    # spinning made runs many times slower. It changes how threads wait, not what they compute.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    for key, value in env_changes.items():
        env.pop(key, None) if value is None else env.__setitem__(key, value)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.xml"
        cmd = [sys.executable, "-m", "pytest", "-q", f"--junitxml={report}", *map(str, lessons)]
        if workers > 1:
            cmd += ["-n", str(workers), "--dist", "loadfile"]
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if not report.exists():
            return {p.name: ["error: " + (r.stdout + r.stderr)[-300:]] for p in lessons}
        failed: dict[str, list[str]] = {p.name: [] for p in lessons}
        ran = {p.name: 0 for p in lessons}
        for case in ET.parse(report).iter("testcase"):
            lesson = next((p.name for p in lessons if p.stem in case.get("classname", "")), "?")
            ran[lesson] = ran.get(lesson, 0) + 1
            if case.find("failure") is not None or case.find("error") is not None:
                failed.setdefault(lesson, []).append(re.sub(r"^Cell ", "", case.get("name", "?")))
        for lesson, n in ran.items():
            if n == 0:  # not collected or not run: that is no pass
                failed[lesson] = ["no cell ran: " + (r.stdout + r.stderr)[-200:]]
        return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lessons", nargs="*", help="two-digit lesson numbers (default: all)")
    ap.add_argument("--columns", nargs="*", help="column names to run (default: all)")
    ap.add_argument("--full", action="store_true", help="also every thread count x every kernel set")
    ap.add_argument("--workers", type=int, default=2, help="pytest-xdist workers per run (default 2)")
    args = ap.parse_args(argv)
    lessons = [p for p in all_lessons() if not args.lessons or p.name[:2] in args.lessons]
    cols = {k: v for k, v in columns(args.full).items() if not args.columns or k in args.columns}
    grid = {}
    for name, changes in cols.items():
        t0 = time.perf_counter()
        grid[name] = run_column(changes, lessons, args.workers)
        bad = sum(bool(v) for v in grid[name].values())
        print(
            f"{name}: {len(lessons) - bad}/{len(lessons)} lessons green ({time.perf_counter() - t0:.0f} s)", flush=True
        )
    width = len("lesson 00")
    print("\n" + "lesson".ljust(width), *(c.ljust(max(len(c), 6)) for c in cols))
    for p in lessons:
        cells = [("ok" if not grid[c].get(p.name) else "FAIL " + ",".join(grid[c][p.name])) for c in cols]
        print(f"lesson {p.name[:2]}".ljust(width), *(v.ljust(max(len(c), 6)) for v, c in zip(cells, cols)))
    return 0 if all(not v for col in grid.values() for v in col.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
