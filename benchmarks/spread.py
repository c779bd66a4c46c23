"""How far the lessons' printed figures move across machines and seeds: the measurements behind the
tolerances in the notebooks' cell metadata and behind their checkpoints' thresholds.

    python benchmarks/spread.py run [--lessons 01 04] [--threads 1 2 4] [--kernels default avx2 avx512]
                                    [--seeds 0 1 2] [--device cpu] [--notebooks DIR] [--out FILE]
    python benchmarks/spread.py report [--notebooks DIR] [--out FILE]   # the table for SPREAD.md

`run` executes each lesson top to bottom (like nbval, in its own folder) once per configuration:
every thread count x CPU kernel set at the lessons' own seed (42), then each extra seed at one
thread and this CPU's best kernels. An extra seed is put in by rewriting the lesson's seeding calls
(`setup()`, `seed_everything(42)`, `manual_seed(42)`, `seed=42`) in a copy; a different seed stands
for what a different machine does to a chaotic training run, only larger. Cells keep running after
a failed checkpoint, which is recorded. Each run appends one JSON line to the output file, so a long
measurement can be stopped and resumed (configurations already there are skipped).

`report` prints, for every code cell whose printed numbers are not the same in every run: the
largest distance of any of its numbers from the stored output over the configurations at seed 42
and over the seeds, the cell's tolerance, and whether the tolerance covers the configurations; then
every checkpoint that failed in some run. `ATEN_CPU_CAPABILITY` values the CPU lacks are left out.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from nbval.plugin import get_sanitize_patterns  # noqa: E402
from nbval_tolerance import split_numbers, tolerance_of  # noqa: E402  (the comparison nbval uses)

from tools.classroom import manifest  # noqa: E402
from tools.matrix import cpu_kernels  # noqa: E402

SEED_CALLS = [
    (r"\bsetup\(\)", "setup({seed})"),
    (r"seed_everything\(42\)", "seed_everything({seed})"),
    (r"manual_seed\(42\)", "manual_seed({seed})"),
    (r"\bseed=42\b", "seed={seed}"),
]


def sanitizers() -> list[tuple[re.Pattern, str]]:
    """The regex/replace pairs of tests/sanitize.cfg, read and applied as nbval reads and applies them."""
    text = (ROOT / "tests" / "sanitize.cfg").read_text()
    return [(re.compile(r), rep) for r, rep in get_sanitize_patterns(text)]


def printed(cell, subs) -> str:
    """What a code cell printed as text (streams and text/plain), sanitized."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif "text/plain" in out.get("data", {}):
            parts.append(out["data"]["text/plain"])
    text = "".join(parts)
    for rx, rep in subs:
        text = rx.sub(rep, text)
    return text


def lesson_paths(folder: str, numbers: list[str] | None) -> list[Path]:
    """The lessons of the manifest (or those numbered), from `folder`."""
    return [Path(folder) / lesson.file for lesson in manifest() if not numbers or lesson.number in numbers]


def execute(path: Path, seed: int, env: dict[str, str]) -> dict:
    """Run a copy of the lesson under `env`; per code cell: printed numbers and whether it failed."""
    nb = nbformat.read(path, as_version=4)
    if seed != 42:
        for cell in nb.cells:
            if cell.cell_type == "code":
                for pattern, repl in SEED_CALLS:
                    cell.source = re.sub(pattern, repl.format(seed=seed), cell.source)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    t0 = time.perf_counter()
    try:
        NotebookClient(
            nb,
            timeout=900,
            kernel_name="python3",
            allow_errors=True,
            record_timing=False,
            resources={"metadata": {"path": str(path.parent)}},
        ).execute()
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    subs = sanitizers()
    cells = {}
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            expected = "raises-exception" in cell.metadata.get("tags", [])  # the lesson shows an error on purpose
            failed = not expected and any(o["output_type"] == "error" for o in cell.outputs)
            error = next((f"{o['ename']}: {o['evalue']}" for o in cell.outputs if o["output_type"] == "error"), "")
            cells[str(i)] = {"numbers": split_numbers(printed(cell, subs))[1], "failed": failed, "error": error[:200]}
    return {"seconds": round(time.perf_counter() - t0, 1), "cells": cells}


def configurations(args) -> list[dict]:
    kernels = [k for k in args.kernels if k in cpu_kernels()]
    runs = [{"seed": 42, "threads": t, "kernel": k} for t in args.threads for k in kernels]
    runs += [{"seed": s, "threads": 1, "kernel": "best"} for s in args.seeds if s != 42]
    return runs


def run(args) -> None:
    out = Path(args.out)
    done = set()
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            done.add((r["lesson"], r["seed"], r["threads"], r["kernel"], r["device"]))
    for config in configurations(args):
        for path in lesson_paths(args.notebooks, args.lessons):
            key = (path.name, config["seed"], config["threads"], config["kernel"], args.device)
            if key in done:
                continue
            env = {"OMP_NUM_THREADS": str(config["threads"]), "SGD_DEVICE": args.device}
            if config["kernel"] != "best":
                env["ATEN_CPU_CAPABILITY"] = config["kernel"]
            result = execute(path, config["seed"], env)
            failed = [i for i, c in result["cells"].items() if c["failed"]]
            print(f"{path.name} {config} {args.device}: {result['seconds']} s, failed cells {failed}", flush=True)
            with out.open("a") as f:
                f.write(json.dumps({"lesson": path.name, **config, "device": args.device, **result}) + "\n")


def report(args) -> None:
    runs = [json.loads(line) for line in Path(args.out).read_text().splitlines()]
    subs = sanitizers()
    columns = ["lesson", "cell", "prints", "numbers", "largest move, machines (seed 42)", "largest move, seeds"]
    print("| " + " | ".join(columns + ["tolerance", "covered"]) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    failures = []
    for path in lesson_paths(args.notebooks, None):
        mine = [r for r in runs if r["lesson"] == path.name]
        if not mine:
            continue
        nb = nbformat.read(path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            stored = split_numbers(printed(cell, subs))[1]
            got = [(r, r["cells"].get(str(i))) for r in mine]
            failures += [(path.name, i, r) for r, c in got if c and c["failed"]]
            comparable = [
                (r, c["numbers"]) for r, c in got if c and not c["failed"] and len(c["numbers"]) == len(stored)
            ]
            if not stored or all(n == stored for _, n in comparable):
                continue

            def move(rs):
                ds = [max(abs(a - b) for a, b in zip(n, stored)) for r, n in comparable if rs(r)]
                return max(ds) if ds else float("nan")

            machines, seeds = move(lambda r: r["seed"] == 42), move(lambda r: r["seed"] != 42)
            tol = tolerance_of(cell.metadata)
            covered = all(
                all(abs(a - b) <= tol["abs"] + tol["rel"] * abs(b) for a, b in zip(n, stored))
                for r, n in comparable
                if r["seed"] == 42
            )
            first = cell.source.strip().splitlines()[0][:48].replace("|", "\\|")
            print(
                f"| {path.name[:2]} | {i} | `{first}` | {len(stored)} | {machines:.4g} | {seeds:.4g} | "
                f"abs {tol['abs']:g}, rel {tol['rel']:g} | {'yes' if covered else '**no**'} |"
            )
    print(
        "\nRuns:",
        len(runs),
        "| configurations:",
        sorted({(r["seed"], r["threads"], r["kernel"], r["device"]) for r in runs}),
    )
    if failures:
        print("\nFailed cells (lesson, cell, configuration, error):")
        for name, i, r in failures:
            print(
                f"- {name[:2]} cell {i}: seed {r['seed']}, {r['threads']} threads, {r['kernel']}, {r['device']}: "
                f"{r['cells'][str(i)]['error']}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["run", "report"])
    ap.add_argument("--lessons", nargs="*", help="two-digit lesson numbers (default: all)")
    ap.add_argument("--threads", nargs="*", type=int, default=[1, 2, 4])
    ap.add_argument("--kernels", nargs="*", default=["default", "avx2", "avx512"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2, 3])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--notebooks", default=str(ROOT / "notebooks"), help="where the lessons are (a copy, say)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "spread.jsonl"))
    args = ap.parse_args()
    run(args) if args.what == "run" else report(args)


if __name__ == "__main__":
    main()
