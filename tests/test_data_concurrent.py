"""Many first loads at once on one data folder: a class starting together, or `pytest -n` on a fresh machine.

Each case starts its processes together (they wait at a barrier once torch is imported), on a data
folder that is empty or half-made. All must succeed, with the tensors a lone process gets (the
manifest's crc32), and leave a complete folder with nothing half-made in it.

The real-archive cases extract into /dev/shm when it is there: on an ordinary disk, creating the
84,000 small files of both datasets costs about 25 s more per case and tests nothing more.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from test_data import _PROCESSES, Worker, leftovers, stop, tiny_dataset

from helpers import storage as S

ARCHIVES = S.archive_dir()
needs_archives = pytest.mark.skipif(
    not all((ARCHIVES / ds.archive).is_file() for ds in S.DATASETS.values()),
    reason=f"the offline archives are not in {ARCHIVES} (set SGD_ARCHIVES)",
)


@pytest.fixture
def scratch(tmp_path):
    """An empty folder, in memory (tmpfs) when the machine has room there."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 2 << 30:
        folder = Path(tempfile.mkdtemp(prefix="sgd-data-test-", dir=shm))
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path


def run_together(specs: list[dict], env: dict[str, str] | None = None) -> list[Worker]:
    """Start one worker per spec, release them at the same moment, and wait until all have finished."""
    barrier = _PROCESSES.Barrier(len(specs))
    workers = [Worker(spec, env, barrier) for spec in specs]
    try:
        for w in workers:
            w.finish()
    finally:
        stop(workers)
    return workers


def check_waiting(workers: list[Worker], names: list[str], met: bool = True) -> str:
    """Each worker said 'waiting' at most once per dataset and warned of nothing (and, if ``met``, some waited)."""
    for w in workers:
        said = "\n".join(w.log)
        assert "[WARNING]" not in said, said
        for name in names:
            assert said.count(f"that is preparing {name} in") <= 1, said
    said = "\n".join(m for w in workers for m in w.log)
    assert not met or "waiting for another process" in said, "the processes were meant to meet at the lock"
    return said


@needs_archives
@pytest.mark.parametrize("n", [2, 4, 8])
def test_first_lessons_at_once_on_an_empty_folder(scratch, n):
    """n kernels call what lessons 00 and 04 call, at the same moment, half of them in each order."""
    root = scratch / "data"
    calls = ["load_3s_and_7s", "load_mnist"]
    specs = [{"calls": calls if i % 2 == 0 else calls[::-1]} for i in range(n)]
    workers = run_together(specs, {"SGD_DATA": str(root), "SGD_ARCHIVES": str(ARCHIVES)})
    said = check_waiting(workers, list(S.DATASETS))
    outs = [w.result for w in workers]
    assert all(o == outs[0] for o in outs), "every process must get the same tensors"
    assert outs[0]["mnist_sample"] == S.MNIST_SAMPLE.crc32 and outs[0]["mnist_png"] == S.MNIST.crc32
    for ds in S.DATASETS.values():  # one process did the work, the others waited for it
        assert said.count(f"extracting {ARCHIVES / ds.archive}") == 1, said
        assert said.count(f"decoding {ds.total} images") == 1, said
        assert S.missing_files(ds, root / ds.name) == {}
        assert S.temporaries(ds, root) == [] and leftovers(root, ds.name) == []
        assert S._read_cache(ds, S.cache_path(ds, root), say=False) is not None
    locks = {S.lock_path(ds, root).name for ds in S.DATASETS.values()}  # these may stay (empty files)
    assert sorted(p.name for p in root.iterdir() if p.name not in locks) == ["cache", "mnist_png", "mnist_sample"]
    assert sorted(p.name for p in (root / "cache").iterdir()) == ["mnist_png.pt", "mnist_sample.pt"]


def test_many_at_once_on_a_half_made_folder(tmp_path):
    """What killed runs leave (a partial extraction, a half-removed copy, a cache temp file), an incomplete
    folder and a truncated cache: of four processes started at once, one repairs it, and all get the same tensors."""
    ds, root, archives, _ = tiny_dataset(tmp_path)
    good = S.load_raw(ds, root, archives)
    cp = S.cache_path(ds, root)
    cp.write_bytes(cp.read_bytes()[:100])
    (root / ds.name / "train" / "7" / "5.png").unlink()
    (root / f".{ds.name}.partial-x1" / ds.name / "train").mkdir(parents=True)
    (root / f".{ds.name}.removing-1-2" / "valid").mkdir(parents=True)
    (root / "cache" / f".{ds.name}.pt.a1b2.tmp").write_bytes(b"half")
    workers = run_together([{"datasets": [ds], "root": root, "archives": archives}] * 4)
    said = check_waiting(workers, [ds.name], met=False)  # the work takes milliseconds: they may not meet
    outs = [w.result for w in workers]
    assert {o["tiny_mnist"] for o in outs} == {S.tensors_crc32(ds, good)}
    assert said.count("left by an unfinished run") == 3 and said.count("repairing it") == 1
    assert S.missing_files(ds, root / ds.name) == {} and leftovers(root, ds.name) == []
    assert all(torch.equal(v, S.load_raw(ds, root, archives)[k]) for k, v in good.items())
