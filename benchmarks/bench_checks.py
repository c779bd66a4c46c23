"""How long each exercise's check takes in the lessons, on this machine's CPU.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_checks.py [NN ...]   # default: every checked lesson

Runs each lesson top to bottom (solutions included, as stored), timing every cell, and prints the
time of each `helpers.check(...)` cell and the slowest. Nothing is written back.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tools import classroom  # noqa: E402


def main(numbers: list[str]) -> None:
    os.environ.setdefault("SGD_DEVICE", "cpu")
    _, pending = classroom.exercise_table()
    paths = [p for p in classroom.lessons() if p.name[:2] not in pending and (not numbers or p.name[:2] in numbers)]
    slowest = 0.0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
        for cell in nb.cells:
            if classroom.CHECK in cell.metadata.get("tags", []):
                t = cell.metadata["execution"]
                start, end = (
                    datetime.fromisoformat(t[k].replace("Z", "+00:00"))
                    for k in ("iopub.execute_input", "shell.execute_reply")
                )
                seconds = (end - start).total_seconds()
                slowest = max(slowest, seconds)
                print(f"lesson {path.name[:2]}  {cell.source.split(chr(34))[1]:<26} {seconds:6.2f} s")
    print(f"slowest check: {slowest:.2f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
