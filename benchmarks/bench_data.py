"""Decoding the PNGs vs loading the tensor cache, on the same dataset, in one run.

    .venv/bin/python benchmarks/bench_data.py [mnist_sample|mnist_png ...]

Both ways produce the same uint8 tensors (checked before timing is reported).
"""

from __future__ import annotations

import sys
import time

import torch

from helpers import storage as D


def best_of(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(names: list[str]) -> None:
    for name in names:
        ds = D.DATASETS[name]
        folder = D.dataset_path(ds)
        D.load_raw(ds)  # make sure the cache exists
        t_png, decoded = best_of(lambda: D.decode(ds, folder), 1)
        t_cache, cached = best_of(lambda: D.load_raw(ds), 5)
        assert decoded.keys() == cached.keys() and all(torch.equal(decoded[k], cached[k]) for k in decoded)
        mb = sum(v.numel() * v.element_size() for v in cached.values()) / 1e6
        print(f"{name}: {ds.total} images, {mb:.0f} MB of tensors")
        print(f"  decode PNGs : {t_png:8.3f} s")
        print(f"  warm cache  : {t_cache:8.3f} s   ({mb / t_cache / 1e3:.1f} GB/s)")
        print(f"  ratio       : {t_png / t_cache:8.0f}x faster from the cache")


if __name__ == "__main__":
    main(sys.argv[1:] or list(D.DATASETS))
