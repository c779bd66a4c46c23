"""Re-run notebooks top to bottom in their own folder and store the fresh outputs in place.

    python tools/execute_notebooks.py notebooks/*.ipynb

Stored outputs must come from one clean run (nbval compares them, readers see them), so after
editing a lesson, run this on it rather than saving a half-run notebook from JupyterLab.
Runs on the CPU (SGD_DEVICE=cpu) with one torch thread (OMP_NUM_THREADS=1, as `make test` runs
the notebooks), so that stored outputs are the ones CI reproduces: a float sum split over two
threads rounds differently, and a training run's fourth decimal can move (cells that print such
figures carry a measured "tolerance" in their metadata; see tests/nbval_tolerance.py).
Cell metadata is left as it was: no execution timings are recorded, so a re-run changes only what
the cells print.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=False,
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timings stored by older runs or other tools
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    return time.perf_counter() - t0


if __name__ == "__main__":
    os.environ.setdefault("SGD_DEVICE", "cpu")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for p in sys.argv[1:]:
        print(f"{p}: {execute(Path(p)):.1f} s")
