"""What checking every member costs when an archive is extracted, in one run, the ways interleaved.

    .venv/bin/python benchmarks/bench_extract.py [--rounds N] [--dir FOLDER] [mnist_png|mnist_sample ...]

Each way opens the offline archive ($SGD_ARCHIVES/<name>.tgz) and extracts all of it into a fresh folder
(by default beside the data folder, on the disk the lessons use; removed again, untimed):

- unchecked: ``extractall(filter="fully_trusted")``, no check at all (what must not be shipped);
- data filter: ``extractall(filter="data")``, tarfile's own check, which resolves each member's path on disk;
- ours: what ``helpers.storage`` does: the member list read once, checked by its names
  (``_first_unsafe``), then extracted with the ``data`` filter's attributes and no file-system lookups
  (``_as_data``).

It prints the best wall and CPU time of each way over the rounds (the ways interleaved, in turn forwards
and backwards), their ratios to the unchecked extraction, and the cost of the check alone (reading the
member list, and ``_first_unsafe`` on it). Before each extraction, untimed, the previous one is removed
and the disk synced: otherwise whichever way comes later pays for writing back the one before. On a
busy or slow disk the wall time is mostly creating files; ``--dir /dev/shm`` (memory) shows what the
checks themselves cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from helpers import storage as S


def unchecked(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="fully_trusted")


def data_filter(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")


def ours(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        assert S._first_unsafe(members) is None
        tf.extractall(dest, members=members, filter=S._as_data)


WAYS = {"unchecked": unchecked, "data filter": data_filter, "ours": ours}


def list_and_check(archive: Path) -> tuple[float, float, int]:
    """Seconds to read the member list, seconds for ``_first_unsafe`` on it, and how many members."""
    t0 = time.perf_counter()
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
    t1 = time.perf_counter()
    assert S._first_unsafe(members) is None
    return t1 - t0, time.perf_counter() - t1, len(members)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", default=["mnist_png"], choices=list(S.DATASETS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", type=Path, default=None, help="where to extract (default: beside the data folder)")
    args = p.parse_args()
    where = args.dir or S.data_dir()
    where.mkdir(parents=True, exist_ok=True)
    for name in args.names:
        ds = S.DATASETS[name]
        archive = S.archive_dir() / ds.archive
        assert S.sha256_of(archive) == ds.sha256, f"{archive} is not the pinned archive"
        wall = dict.fromkeys(WAYS, float("inf"))
        cpu = dict.fromkeys(WAYS, float("inf"))
        listing, check = float("inf"), float("inf")
        for r in range(args.rounds):
            for way in list(WAYS) if r % 2 == 0 else list(WAYS)[::-1]:
                os.sync()  # each way starts with nothing left to write back from the one before (untimed)
                dest = Path(tempfile.mkdtemp(prefix=".bench-extract-", dir=where))
                try:
                    t0, c0 = time.perf_counter(), time.process_time()
                    WAYS[way](archive, dest)
                    w, c = time.perf_counter() - t0, time.process_time() - c0
                    wall[way], cpu[way] = min(wall[way], w), min(cpu[way], c)
                    print(f"  round {r + 1}, {way:12s}: {w:7.2f} s, CPU {c:7.2f} s", flush=True)
                    assert S.missing_files(ds, dest / ds.name) == {}, f"{way} extracted an incomplete {name}"
                finally:
                    shutil.rmtree(dest)
            t_list, t_check, n = list_and_check(archive)
            listing, check = min(listing, t_list), min(check, t_check)
        print(f"{name}: {n} members into {where}, best of {args.rounds} rounds (wall; CPU time of this process)")
        for way in WAYS:
            print(
                f"  {way:12s}: {wall[way]:7.2f} s  {wall[way] / wall['unchecked']:5.2f}x   "
                f"CPU {cpu[way]:7.2f} s  {cpu[way] / cpu['unchecked']:5.2f}x   (x: of the unchecked extraction)"
            )
        print(f"  reading the member list: {listing:.2f} s; checking it (_first_unsafe): {check:.3f} s")
        ratio_wall, ratio_cpu = wall["data filter"] / wall["ours"], cpu["data filter"] / cpu["ours"]
        print(f"  data filter / ours: {ratio_wall:.2f}x wall, {ratio_cpu:.2f}x CPU")


if __name__ == "__main__":
    main()
