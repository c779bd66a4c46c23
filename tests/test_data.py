"""The data layer: small archives built here, every bad input, and the real archives when present.

Several processes at once: tests/test_data_concurrent.py; killed runs: tests/test_data_kill.py.
"""

from __future__ import annotations

import builtins
import gzip
import hashlib
import io
import json
import logging
import multiprocessing
import os
import queue as queue_module
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import urllib.error
import zipfile
import zlib
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import helpers
from helpers import data as D
from helpers import storage as S

TINY_COUNTS = {"train/3": 3, "train/7": 2, "valid/3": 1, "valid/7": 2}
# Indices chosen so that sorting by file name ("10" < "2") and by number differ.
TINY_INDEX = {"train/3": [10, 2, 33], "train/7": [5, 100], "valid/3": [7], "valid/7": [11, 3]}
PROJECT = Path(S.__file__).resolve().parent.parent


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, payload: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    if payload is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tf.addfile(info)
    else:
        info.size = len(payload)
        info.mode = 0o644
        tf.addfile(info, io.BytesIO(payload))


def make_archive(path: Path, name: str, skip: int = 0) -> dict[tuple[str, int], np.ndarray]:
    """Write a tiny MNIST-like .tgz; return the pixels of each (folder, index). `skip` leaves files out."""
    rng = np.random.default_rng(0)
    pixels = {}
    with tarfile.open(path, "w:gz") as tf:
        _add(tf, name, None)
        for folder, idxs in TINY_INDEX.items():
            _add(tf, f"{name}/{folder}", None)
            for n in idxs:
                a = rng.integers(0, 256, (28, 28), dtype=np.uint8)
                pixels[(folder, n)] = a
                if skip > 0:
                    skip -= 1
                    continue
                _add(tf, f"{name}/{folder}/{n}.png", _png(a))
    return pixels


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_dataset(folder: Path) -> tuple[S.Dataset, Path, Path, dict[tuple[str, int], np.ndarray]]:
    """A tiny dataset spec, its archive folder, a data folder not made yet, and the source pixels."""
    archives = folder / "archives"
    archives.mkdir(parents=True)
    archive = archives / "tiny_mnist.tgz"
    pixels = make_archive(archive, "tiny_mnist")
    ds = replace(S.MNIST_SAMPLE, name="tiny_mnist", sha256=sha(archive), counts=dict(TINY_COUNTS), crc32=None)
    return ds, folder / "data", archives, pixels


@pytest.fixture
def tiny(tmp_path):
    return tiny_dataset(tmp_path)


def leftovers(root: Path, name: str) -> list[str]:
    """Hidden files of a dataset in the data folder and its cache folder, but for its lock file."""
    if not root.exists():
        return []
    found = [*root.glob(f".{name}*"), *(root / "cache").glob(f".{name}*")]
    return sorted(str(p.relative_to(root)) for p in found if p.name != f".{name}.lock")


def no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def messages(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "helpers.data")


# ------------------------------------------------------------- processes (shared by the other data tests)
# Each worker is a fresh process forked from a server that has imported torch and helpers once, so
# that starting eight of them costs milliseconds, not eight imports of torch; no data is loaded before
# the fork. The workers report their log records and results through a queue.
_PROCESSES = multiprocessing.get_context("forkserver")
_PROCESSES.set_forkserver_preload(["helpers", "test_data"])
LESSON_CALLS = {"load_3s_and_7s": "mnist_sample", "load_mnist": "mnist_png"}


class _ToQueue(logging.Handler):
    def __init__(self, queue) -> None:
        super().__init__(logging.INFO)
        self.queue = queue

    def emit(self, record: logging.LogRecord) -> None:
        self.queue.put(("log", f"[{record.levelname}] {record.getMessage()}"))


def _work(spec: dict, env: dict[str, str], barrier, queue) -> None:
    """In the worker: load what ``spec`` names and put the crc32 of what it got on ``queue``."""
    os.environ.update(env)
    log = logging.getLogger("helpers.data")
    log.addHandler(_ToQueue(queue))
    log.setLevel(logging.INFO)
    try:
        if barrier is not None:
            barrier.wait(timeout=300)
        out = {}
        for call in spec.get("calls", []):  # what a lesson calls (data folder: SGD_DATA), and the uint8 behind it
            t = getattr(helpers, call)()
            crc = 0
            for k in sorted(t):
                crc = zlib.crc32(memoryview(t[k].numpy()).cast("B"), crc)
            out[call] = crc
            out[LESSON_CALLS[call]] = S.tensors_crc32(S.DATASETS[LESSON_CALLS[call]], S.load_raw(LESSON_CALLS[call]))
        for ds in spec.get("datasets", []):
            out[ds.name] = S.tensors_crc32(ds, S.load_raw(ds, spec["root"], spec["archives"]))
        queue.put(("result", out))
    except BaseException:
        queue.put(("error", traceback.format_exc()))


class Worker:
    """One process that loads datasets (``spec``: ``calls`` and/or ``datasets``, ``root``, ``archives``)."""

    def __init__(self, spec: dict, env: dict[str, str] | None = None, barrier=None) -> None:
        self.queue = _PROCESSES.Queue()
        self.process = _PROCESSES.Process(target=_work, args=(spec, env or {}, barrier, self.queue), daemon=True)
        self.process.start()
        self.log: list[str] = []
        self.result: dict | None = None

    def _next(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                kind, value = self.queue.get(timeout=0.5)
                break
            except queue_module.Empty:
                if not self.process.is_alive() and self.queue.empty():
                    pytest.fail(
                        f"worker {self.process.pid} died (exit code {self.process.exitcode}); its log:\n"
                        + "\n".join(self.log)
                    )
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"worker {self.process.pid} was silent for {timeout} s; its log:\n" + "\n".join(self.log)
                    )
        if kind == "error":
            pytest.fail(f"worker {self.process.pid} failed:\n{value}\nits log:\n" + "\n".join(self.log))
        if kind == "log":
            self.log.append(value)
        else:
            self.result = value

    def wait_for(self, text: str, timeout: float = 120) -> None:
        """Read the worker's log until a message holds ``text``."""
        while not any(text in m for m in self.log):
            self._next(timeout)

    def finish(self, timeout: float = 600) -> dict:
        """Wait for the worker's result (the crc32 of each dataset it loaded) and its exit."""
        while self.result is None:
            self._next(timeout)
        self.process.join(timeout)
        assert self.process.exitcode == 0
        return self.result

    def kill(self) -> None:
        """SIGKILL, as an out-of-memory killer or a closed laptop lid would do."""
        self.process.kill()
        self.process.join(30)
        assert self.process.exitcode == -signal.SIGKILL


def stop(workers: list[Worker]) -> None:
    for w in workers:
        if w.process.is_alive():
            w.process.kill()
            w.process.join(30)


# ----------------------------------------------------------------------------- the good path
def test_extract_decode_and_cache(tiny):
    ds, root, archives, pixels = tiny
    t = S.load_raw(ds, root, archives)
    assert t["train_x"].dtype == torch.uint8 and t["train_x"].shape == (5, 28, 28)
    assert t["train_idx"].tolist() == [2, 5, 10, 33, 100]  # ordered by the number N, not the name
    assert t["train_y"].tolist() == [3, 7, 3, 3, 7]
    assert t["valid_idx"].tolist() == [3, 7, 11] and t["valid_y"].tolist() == [7, 3, 7]
    assert np.array_equal(t["train_x"][2].numpy(), pixels[("train/3", 10)])
    assert np.array_equal(t["valid_x"][0].numpy(), pixels[("valid/7", 3)])
    assert S.missing_files(ds, root / "tiny_mnist") == {}
    assert S.cache_path(ds, root).is_file()
    assert leftovers(root, "tiny_mnist") == [] and S.temporaries(ds, root) == []


def test_names_one_way(tiny):
    ds, root, _, _ = tiny
    assert ds.archive == "tiny_mnist.tgz"
    assert S.cache_path(ds, root) == root / "cache" / "tiny_mnist.pt"
    assert S.lock_path(ds, root) == root / ".tiny_mnist.lock"
    assert {n: d.archive for n, d in S.DATASETS.items()} == {n: f"{n}.tgz" for n in S.DATASETS}
    assert S.cache_path("mnist_png", root) == S.cache_path(S.MNIST, root)
    with pytest.raises(D.DataError, match="There is no dataset 'mnist'; the datasets are mnist_sample, mnist_png"):
        S.load_raw("mnist", root)


def test_public_names():
    assert helpers.DataError is D.DataError is S.DataError and D.ChecksumError is S.ChecksumError
    assert helpers.load_3s_and_7s is D.load_3s_and_7s and helpers.load_mnist is D.load_mnist


def test_warm_load_needs_neither_folder_nor_archive(tiny, monkeypatch):
    ds, root, archives, _ = tiny
    first = S.load_raw(ds, root, archives)
    (archives / ds.archive).unlink()
    S._remove(root / ds.name)
    monkeypatch.setattr(S, "_download", no_network)
    again = S.load_raw(ds, root, archives)
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_cache_is_plain_tensors_with_a_checksum(tiny):
    ds, root, archives, _ = tiny
    t = S.load_raw(ds, root, archives)
    stored = torch.load(S.cache_path(ds, root), weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in stored.values())
    assert stored["crc32"].item() == S.tensors_crc32(ds, t) and stored["version"].item() == S._CACHE_VERSION
    assert S.cache_path(ds, root).stat().st_mode & 0o777 == 0o644, "others sharing the data folder read it too"


def _damage_cache(cp: Path, good: dict[str, torch.Tensor], damage: str) -> None:
    """Replace the cache at ``cp`` by a damaged one: unreadable, or tensors of the wrong form or contents."""
    if damage == "garbage":
        cp.write_bytes(b"not a torch file")
        return
    if damage == "truncated":
        cp.write_bytes(cp.read_bytes()[: cp.stat().st_size // 2])
        return
    if damage == "pickled object":
        torch.save({"train_x": Path("/etc/passwd")}, cp)
        return
    t = dict(good)
    if damage == "wrong shape":
        t["train_x"] = t["train_x"][:2]
    elif damage == "labels int32":
        t["train_y"] = t["train_y"].int()
    elif damage == "pixels float":
        t["train_x"] = t["train_x"].float()
    elif damage == "wrong order":  # images, labels and indices shuffled together: shapes and dtypes are right
        p = torch.tensor([4, 3, 2, 1, 0])
        t.update({k: t[k][p].contiguous() for k in ("train_x", "train_y", "train_idx")})
    elif damage == "wrong label counts":
        t["train_y"] = torch.tensor([3, 3, 3, 3, 7])
    elif damage == "bit flip":  # same form, other pixels: only the checksum can tell
        t["train_x"] = t["train_x"].clone()
        t["train_x"][0, 0, 0] ^= 1
    extra = {"version": torch.tensor(1 if damage == "old version" else S._CACHE_VERSION)}
    if damage != "no checksum":  # the checksum of the tensors as stored (of the good ones for the bit flip)
        extra["crc32"] = torch.tensor(S.tensors_crc32(TINY_SPLITS, good if damage == "bit flip" else t))
    torch.save({**t, **extra}, cp)


TINY_SPLITS = replace(S.MNIST_SAMPLE, counts=dict(TINY_COUNTS), crc32=None)  # what tensors_crc32 reads of a spec

CACHE_DAMAGE = {
    "garbage": "unreadable",
    "truncated": "unreadable",
    "pickled object": "unreadable",
    "wrong shape": "of the wrong shapes in split 'train'",
    "labels int32": "of the wrong dtypes in split 'train'",
    "pixels float": "of the wrong dtypes in split 'train'",
    "wrong order": "out of MNIST's order in split 'train'",
    "wrong label counts": "of the wrong label counts in split 'train'",
    "bit flip": "damaged (crc32",
    "old version": "written by another version",
    "no checksum": "without its checksum",
}


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE))
def test_damaged_cache_is_rebuilt(tiny, caplog, damage):
    ds, root, archives, _ = tiny
    good = S.load_raw(ds, root, archives)
    cp = S.cache_path(ds, root)
    _damage_cache(cp, good, damage)
    caplog.set_level(logging.INFO, logger="helpers.data")
    again = S.load_raw(ds, root, archives)
    said = messages(caplog)
    assert f"the cache {cp} is {CACHE_DAMAGE[damage]}" in said and "rebuilding it" in said
    assert all(torch.equal(good[k], again[k]) for k in good)
    assert S._read_cache(ds, cp, say=False) is not None


def test_cache_with_the_wrong_images_is_refused(tiny, caplog):
    """A cache that checks out by itself but is not the dataset the manifest names (its crc32) is rebuilt."""
    ds, root, archives, _ = tiny
    good = S.load_raw(ds, root, archives)
    pinned = replace(ds, crc32=S.tensors_crc32(ds, good))
    other = {k: (v.flip(-1).contiguous() if k.endswith("_x") else v) for k, v in good.items()}
    torch.save(
        {**other, "version": torch.tensor(S._CACHE_VERSION), "crc32": torch.tensor(S.tensors_crc32(ds, other))},
        S.cache_path(ds, root),
    )
    assert S._read_cache(ds, S.cache_path(ds, root), say=False) is not None  # sound by itself
    caplog.set_level(logging.INFO, logger="helpers.data")
    again = S.load_raw(pinned, root, archives)
    assert "not MNIST's images (crc32" in messages(caplog)
    assert all(torch.equal(good[k], again[k]) for k in good)


def test_cache_path_taken_by_a_folder_or_file(tiny):
    ds, root, archives, _ = tiny
    S.load_raw(ds, root, archives)
    cp = S.cache_path(ds, root)
    cp.unlink()
    cp.mkdir()
    with pytest.raises(D.DataError, match=r"cache file of tiny_mnist but is not a file: delete it and run again"):
        S.load_raw(ds, root, archives)
    cp.rmdir()
    cp.parent.rmdir()
    cp.parent.write_text("a file where the cache folder should be")
    with pytest.raises(D.DataError, match=r"should be the cache folder but is not a folder: delete it and run again"):
        S.load_raw(ds, root, archives)


def test_lock_file_taken_by_a_folder(tiny):
    ds, root, archives, _ = tiny
    S.lock_path(ds, root).mkdir(parents=True)
    with pytest.raises(D.DataError, match=r"Cannot use the lock file .*\.tiny_mnist\.lock .*: delete it and run again"):
        S.load_raw(ds, root, archives)


def test_unreadable_archive(tiny, monkeypatch):
    ds, root, archives, _ = tiny

    def denied(path, chunk=0):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(S, "sha256_of", denied)
    with pytest.raises(
        D.DataError, match=r"Cannot read the archive .*tiny_mnist.tgz .*fix its permissions, or delete it"
    ):
        S.load_raw(ds, root, archives)


def test_unwritable_cache_is_a_warning(tiny, caplog, monkeypatch):
    ds, root, archives, _ = tiny

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    t = S.load_raw(ds, root, archives)
    assert t["train_x"].shape == (5, 28, 28)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "could not write the cache" in warnings[0] and "No space left" in warnings[0]
    assert not S.cache_path(ds, root).exists() and leftovers(root, ds.name) == []


# ----------------------------------------------------------------------------- messages
def test_loading_prints_nothing_and_logs_progress(tiny, capfd, caplog):
    """A notebook's first and second runs show the same: nothing. Progress goes to the helpers.data logger."""
    ds, root, archives, _ = tiny
    caplog.set_level(logging.INFO, logger="helpers.data")
    S.load_raw(ds, root, archives)
    first = messages(caplog)
    assert "extracting" in first and "decoding 8 images" in first
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == "helpers.data")
    caplog.clear()
    S.load_raw(ds, root, archives)
    assert messages(caplog) == ""
    assert capfd.readouterr() == ("", "")


SILENT = """
import json, sys
from helpers import storage as S
spec = json.loads(sys.argv[1])
for _ in range(2):
    S.load_raw(S.Dataset(**spec["dataset"]), spec["root"], spec["archives"])
"""


def test_lesson_load_is_silent_cold_and_warm(tmp_path):
    """In a fresh process, as in a kernel: a cold and a warm load write nothing to stdout or stderr."""
    ds, root, archives, _ = tiny_dataset(tmp_path)
    spec = {"dataset": asdict(ds), "root": str(root), "archives": str(archives)}
    r = subprocess.run(
        [sys.executable, "-c", SILENT, json.dumps(spec)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert S.cache_path(ds, root).is_file()


# ----------------------------------------------------------------------------- bad archives
def test_wrong_checksum(tiny):
    ds, root, archives, _ = tiny
    bad = replace(ds, sha256="0" * 64)
    with pytest.raises(D.ChecksumError) as e:
        S.load_raw(bad, root, archives)
    msg = str(e.value)
    assert "Checksum mismatch" in msg and "0" * 64 in msg and ds.sha256 in msg
    assert "delete it and copy it again" in msg
    assert not (root / ds.name).exists() and leftovers(root, ds.name) == []


@pytest.mark.parametrize("kind", ["garbage", "truncated", "not gzip", "empty", "zip", "gzip of no tar"])
def test_corrupt_archive(tiny, kind):
    ds, root, archives, _ = tiny
    archive = archives / ds.archive
    if kind == "garbage":
        archive.write_bytes(b"\x1f\x8b" + os.urandom(500))
    elif kind == "truncated":
        archive.write_bytes(archive.read_bytes()[:-300])
    elif kind == "not gzip":
        archive.write_bytes(b"<html>a captive portal's login page</html>")
    elif kind == "empty":
        archive.write_bytes(b"")
    elif kind == "zip":  # the right name, the wrong format
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(f"{ds.name}/train/3/10.png", b"not read")
        archive.write_bytes(buf.getvalue())
    else:
        archive.write_bytes(gzip.compress(b"a gzipped text, not a tar archive\n" * 40))
    ds = replace(ds, sha256=sha(archive))  # the checksum is right: the archive itself is bad
    with pytest.raises(D.DataError) as e:
        S.load_raw(ds, root, archives)
    assert "is corrupt or truncated" in str(e.value) and "copy it again" in str(e.value)
    assert not (root / ds.name).exists(), "a broken extraction must not leave a folder untar_data would accept"
    assert leftovers(root, ds.name) == []
    assert not S.cache_path(ds, root).exists()


def test_archive_missing_files(tiny):
    ds, root, archives, _ = tiny
    archive = archives / ds.archive
    make_archive(archive, ds.name, skip=2)
    ds = replace(ds, sha256=sha(archive))
    with pytest.raises(D.DataError, match=r"does not hold a complete tiny_mnist: train/3: 1 of 3 images"):
        S.load_raw(ds, root, archives)
    assert not (root / ds.name).exists() and leftovers(root, ds.name) == []


def test_interrupted_extraction_leaves_nothing(tiny, monkeypatch):
    ds, root, archives, _ = tiny
    real = tarfile.TarFile.extractall

    def killed(self, *a, **k):
        real(self, *a, **k)
        raise KeyboardInterrupt  # as if the kernel were interrupted before the rename

    monkeypatch.setattr(tarfile.TarFile, "extractall", killed)
    with pytest.raises(KeyboardInterrupt):
        S.load_raw(ds, root, archives)
    assert not (root / ds.name).exists() and leftovers(root, ds.name) == []
    monkeypatch.undo()
    assert S.load_raw(ds, root, archives)["train_x"].shape == (5, 28, 28)


@pytest.mark.parametrize("step", ["temporary folder", "writing a file"])
def test_extraction_that_fails_on_disk_is_a_data_error(tiny, monkeypatch, step):
    """A folder that cannot be made or a full disk half-way: a DataError that says what to check, nothing left."""
    ds, root, archives, _ = tiny

    def fails(*a, **k):
        if step == "temporary folder":
            raise PermissionError(13, "Permission denied")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(
        *((tempfile, "mkdtemp") if step == "temporary folder" else (tarfile.TarFile, "makefile")), fails
    )
    with pytest.raises(
        D.DataError, match=r"Could not extract .*tiny_mnist.tgz into .*Check free space and permissions"
    ):
        S.load_raw(ds, root, archives)
    assert not (root / ds.name).exists() and leftovers(root, ds.name) == []
    monkeypatch.undo()
    assert S.load_raw(ds, root, archives)["train_x"].shape == (5, 28, 28)


def test_what_killed_runs_left_is_removed(tiny, caplog):
    ds, root, archives, _ = tiny
    (root / f".{ds.name}.partial-abc123" / ds.name / "train").mkdir(parents=True)
    (root / f".{ds.name}.removing-12-34" / "train" / "3").mkdir(parents=True)
    (root / f".{ds.name}.removing-56-78").write_text("a file being removed")
    (root / "cache").mkdir()
    (root / "cache" / f".{ds.name}.pt.k2j3h4.tmp").write_bytes(b"half a cache")
    (root / ".other.partial-1").mkdir()  # another dataset's: not this one's to touch
    assert len(S.temporaries(ds, root)) == 4
    caplog.set_level(logging.INFO, logger="helpers.data")
    S.load_raw(ds, root, archives)
    assert leftovers(root, ds.name) == [] and S.temporaries(ds, root) == []
    assert messages(caplog).count("left by an unfinished run") == 4
    assert (root / ".other.partial-1").is_dir()


def test_leftover_that_cannot_be_removed_is_a_warning(tiny, caplog, monkeypatch):
    """Another user's leftover in a shared folder: said once, and the work goes on beside it."""
    ds, root, archives, _ = tiny
    theirs = root / f".{ds.name}.partial-theirs"
    (theirs / ds.name).mkdir(parents=True)
    delete = S._delete

    def not_ours(path):
        if path == theirs:
            raise PermissionError(13, "Permission denied", str(path / ds.name))
        delete(path)

    monkeypatch.setattr(S, "_delete", not_ours)
    assert S.load_raw(ds, root, archives)["train_x"].shape == (5, 28, 28)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and f"could not remove {theirs}" in warnings[0] and "Permission denied" in warnings[0]
    assert S.temporaries(ds, root) == [theirs] and S.missing_files(ds, root / ds.name) == {}


def test_provision_removes_leftovers_even_when_the_cache_is_sound(tiny):
    ds, root, archives, _ = tiny
    S.load_raw(ds, root, archives)
    stray = root / "cache" / f".{ds.name}.pt.zz.tmp"
    stray.write_bytes(b"")
    S.provision([ds], root, archives)
    assert not stray.exists() and leftovers(root, ds.name) == []


# ----------------------------------------------------------------------------- bad folders
@pytest.mark.parametrize("files", [0, 1])
def test_incomplete_folder_is_repaired(tiny, caplog, files):
    ds, root, archives, pixels = tiny
    folder = root / ds.name / "train" / "3"
    folder.mkdir(parents=True)
    for n in [10][:files]:
        (folder / f"{n}.png").write_bytes(_png(pixels[("train/3", n)]))
    caplog.set_level(logging.INFO, logger="helpers.data")
    t = S.load_raw(ds, root, archives)
    said = messages(caplog)
    assert "is incomplete (train/3: " in said and "repairing it" in said
    assert t["train_x"].shape == (5, 28, 28) and S.missing_files(ds, root / ds.name) == {}


@pytest.mark.parametrize("where", ["dataset folder", "image folder", "image"])
def test_file_or_folder_in_the_wrong_place_is_repaired(tiny, where):
    """A file where a folder should be (or the reverse) makes the folder incomplete: it is extracted again."""
    ds, root, archives, _ = tiny
    S.dataset_path(ds, root, archives)
    target = {
        "dataset folder": root / ds.name,
        "image folder": root / ds.name / "valid" / "7",
        "image": root / ds.name / "train" / "3" / "10.png",
    }[where]
    S._delete(target)
    if where == "image":
        target.mkdir()
    else:
        target.write_text("a file where a folder should be")
    t = S.load_raw(ds, root, archives)
    assert t["valid_x"].shape == (3, 28, 28) and S.missing_files(ds, root / ds.name) == {}
    assert (root / ds.name / "train" / "3" / "10.png").is_file() and leftovers(root, ds.name) == []


def _damage_png(path: Path, damage: str, pixels: np.ndarray) -> None:
    if damage == "garbage":
        path.write_bytes(os.urandom(300))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:60])
    elif damage == "not a png":
        buf = io.BytesIO()
        Image.fromarray(pixels, mode="L").save(buf, format="BMP")
        path.write_bytes(buf.getvalue())
    elif damage == "wrong size":
        path.write_bytes(_png(np.zeros((29, 28), dtype=np.uint8)))


@pytest.mark.parametrize(
    "damage, says",
    [
        ("garbage", r"train/3/10.png is not a readable PNG \(UnidentifiedImageError"),
        ("truncated", r"train/3/10.png is not a readable PNG \((OSError|SyntaxError)"),
        ("not a png", r"train/3/10.png is not a readable PNG \(UnidentifiedImageError"),
        ("wrong size", r"train/3/10.png is 28x29 pixels, not MNIST's 28x28"),
        ("extra folder", r"train/3/999.png is not a readable PNG \(IsADirectoryError"),
        ("odd name", r"train/3/ten.png is not named like an MNIST image"),
    ],
)
def test_damaged_image_in_a_complete_folder(tiny, damage, says):
    """Damage that the file counts cannot see: a DataError that names the file and the folder to delete."""
    ds, root, archives, pixels = tiny
    folder = S.dataset_path(ds, root, archives)
    png = folder / "train" / "3" / "10.png"
    if damage == "extra folder":
        (folder / "train" / "3" / "999.png").mkdir()
    elif damage == "odd name":
        png.rename(png.with_name("ten.png"))
    else:
        _damage_png(png, damage, pixels[("train/3", 10)])
    assert S.missing_files(ds, folder) == {}, "the damage is meant to pass the file counts"
    with pytest.raises(D.DataError, match=says) as e:
        S.load_raw(ds, root, archives)
    assert f"The folder {folder} is damaged: delete it and run `python -m helpers provision`" in str(e.value)
    assert not S.cache_path(ds, root).exists() and leftovers(root, ds.name) == []
    S._delete(folder)  # what the message says to do
    assert S.load_raw(ds, root, archives)["train_x"].shape == (5, 28, 28)


def test_other_images_in_a_complete_folder(tiny):
    """Readable 28x28 PNGs that are not the dataset's: the manifest's crc32 tells."""
    ds, root, archives, pixels = tiny
    good = S.load_raw(ds, root, archives)
    pinned = replace(ds, crc32=S.tensors_crc32(ds, good))
    S.cache_path(ds, root).unlink()
    (root / ds.name / "valid" / "3" / "7.png").write_bytes(_png(255 - pixels[("valid/3", 7)]))
    with pytest.raises(D.DataError, match=r"decode to tensors that are not MNIST's images \(crc32") as e:
        S.load_raw(pinned, root, archives)
    assert f"The folder {root / ds.name} is damaged: delete it" in str(e.value)


def test_unwritable_data_dir(tiny):
    ds, _, archives, _ = tiny
    blocker = archives.parent / "a-file"
    blocker.write_text("a file where the data folder's parent should be")
    with pytest.raises(D.DataError) as e:
        S.load_raw(ds, blocker / "data", archives)
    assert "is not writable" in str(e.value) and "Set SGD_DATA" in str(e.value)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to a read-only folder")
def test_read_only_data_dir(tiny, caplog):
    ds, root, archives, _ = tiny
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(D.DataError, match="is not writable"):
            S.load_raw(ds, root, archives)
    finally:
        root.chmod(0o700)
    S.dataset_path(ds, root, archives)  # a complete folder, no cache, then read-only (a shared class folder)
    root.chmod(0o500)
    try:
        assert S.load_raw(ds, root, archives)["train_x"].shape == (5, 28, 28)
        assert "decoding tiny_mnist without a cache" in messages(caplog)
    finally:
        root.chmod(0o700)


def test_unwritable_folder_with_a_complete_copy_decodes_without_a_cache(tiny, caplog, monkeypatch):
    ds, root, archives, _ = tiny
    S.dataset_path(ds, root, archives)
    monkeypatch.setattr(S, "_writable", lambda folder: PermissionError(13, "Permission denied"))
    assert S.load_raw(ds, root, archives)["train_x"].shape == (5, 28, 28)
    assert "is not writable: decoding tiny_mnist without a cache" in messages(caplog)
    assert not S.cache_path(ds, root).exists()


# ----------------------------------------------------------------------------- online / offline
def test_offline_with_nothing_cached(tiny, monkeypatch):
    ds, root, archives, _ = tiny
    (archives / ds.archive).unlink()
    monkeypatch.setattr(S, "_download", no_network)
    with pytest.raises(D.DataError) as e:
        S.load_raw(ds, root, archives)
    msg = str(e.value)
    assert "download failed (URLError" in msg
    assert "Connect to the internet" in msg and "set SGD_ARCHIVES" in msg and ds.archive in msg
    assert not (root / ds.name).exists() and not S.cache_path(ds, root).exists()


def test_no_archive_and_no_fastai(tiny, monkeypatch):
    """Nothing cached, no archive, and fastai not installed: which archive to put where, or what to install."""
    ds, root, archives, _ = tiny
    (archives / ds.archive).unlink()
    real_import = builtins.__import__

    def without_fastai(name, *args, **kwargs):
        if name == "fastai" or name.startswith("fastai."):
            raise ModuleNotFoundError("No module named 'fastai'", name="fastai")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_fastai)
    with pytest.raises(D.DataError) as e:
        S.load_raw(ds, root, archives)
    msg = str(e.value)
    assert f"no archive {ds.archive} in {archives}" in msg
    assert "fastai, which would download it, cannot be imported (ModuleNotFoundError: No module named 'fastai')" in msg
    assert f"put the archive {ds.archive} (sha256 {ds.sha256}, as pinned in helpers/storage.py) in {archives}" in msg
    assert "or set SGD_ARCHIVES to the folder that holds it" in msg and "install fastai (`pip install fastai`)" in msg
    assert isinstance(e.value.__cause__, ModuleNotFoundError)
    assert not (root / ds.name).exists() and not S.cache_path(ds, root).exists() and leftovers(root, ds.name) == []


def test_archive_folder_that_is_a_file(tiny, monkeypatch):
    """SGD_ARCHIVES set to the archive itself rather than to its folder: the error says so."""
    ds, root, archives, _ = tiny
    monkeypatch.setattr(S, "_download", no_network)
    with pytest.raises(
        D.DataError, match=r"\(which is a file: SGD_ARCHIVES names the folder that holds the archives\)"
    ):
        S.load_raw(ds, root, archives / ds.archive)


def test_download_that_fails_otherwise(tiny, monkeypatch):
    """A failure of fastai's download that is not a lost connection (a damaged transfer) is a DataError too."""
    ds, root, archives, _ = tiny
    (archives / ds.archive).unlink()

    def damaged_download(ds_):
        raise Exception("Downloaded file is corrupt or not latest version")  # what fastdownload raises

    monkeypatch.setattr(S, "_download", damaged_download)
    with pytest.raises(D.DataError) as e:
        S.load_raw(ds, root, archives)
    msg = str(e.value)
    assert "fastai's download of it failed (Exception: Downloaded file is corrupt or not latest version)" in msg
    assert f"Run again to retry, or put the archive {ds.archive}" in msg and "SGD_ARCHIVES" in msg
    assert not (root / ds.name).exists() and leftovers(root, ds.name) == []


@pytest.fixture
def fastai_home(tmp_path, monkeypatch):
    """fastai's config, archive and data folders under tmp_path/fastai instead of ~/.fastai."""
    from fastai.data.external import fastai_cfg

    monkeypatch.setenv("FASTAI_HOME", str(tmp_path / "fastai"))
    fastai_cfg.cache_clear()
    yield tmp_path / "fastai"
    fastai_cfg.cache_clear()


def test_online_path_downloads_with_fastai_and_extracts_here(tiny, monkeypatch, fastai_home):
    """fastai's FastDownload fetches the archive into fastai's archive folder (a copy of the tiny archive stands
    in for the transfer, and a size check for fastai's); the data layer checks its members and extracts it."""
    import fastdownload.core
    from fastai.data.external import URLs

    ds, root, archives, _ = tiny
    served = (archives / ds.archive).rename(archives.parent / "served.tgz")
    urls = []

    def transfer(url, dest, *args, **kwargs):
        urls.append(url)
        shutil.copyfile(served, dest)
        return Path(dest)

    monkeypatch.setattr(fastdownload.core, "download_url", transfer)
    monkeypatch.setattr(
        fastdownload.core, "check", lambda module, url, path: path.stat().st_size == served.stat().st_size
    )
    (root / ds.name).mkdir(parents=True)  # an empty folder, which untar_data would have taken for the dataset
    t = S.load_raw(ds, root, archives)
    assert urls == [URLs.MNIST_SAMPLE] and (fastai_home / "archive" / "mnist_sample.tgz").is_file()
    assert t["valid_x"].shape == (3, 28, 28) and S.missing_files(ds, root / ds.name) == {}
    assert leftovers(root, ds.name) == []
    S._delete(root / ds.name)
    S.cache_path(ds, root).unlink()
    assert S.load_raw(ds, root, archives)["train_x"].shape == (5, 28, 28) and len(urls) == 1, "downloaded once"


@pytest.mark.parametrize("damage", ["incomplete", "truncated"])
def test_unusable_download_is_deleted(tiny, tmp_path, monkeypatch, damage):
    """A downloaded archive that cannot be used is deleted, so that the next run downloads it again."""
    ds, root, archives, _ = tiny
    (archives / ds.archive).unlink()
    fetched = tmp_path / "fastai" / "archive" / "mnist_sample.tgz"
    fetched.parent.mkdir(parents=True)
    make_archive(fetched, ds.name, skip=2 if damage == "incomplete" else 0)
    if damage == "truncated":
        fetched.write_bytes(fetched.read_bytes()[:-300])
    monkeypatch.setattr(S, "_download", lambda ds_: fetched)
    says = "does not hold a complete tiny_mnist: train/3: 1 of 3 images" if damage == "incomplete" else "is corrupt"
    with pytest.raises(D.DataError, match=says) as e:
        S.load_raw(ds, root, archives)
    assert str(e.value).endswith("It was deleted: run again to download it again.")
    assert not fetched.exists() and not (root / ds.name).exists() and leftovers(root, ds.name) == []


def test_locations_follow_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SGD_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("SGD_ARCHIVES", str(tmp_path / "a"))
    assert S.data_dir() == tmp_path / "d" and S.archive_dir() == tmp_path / "a"
    monkeypatch.delenv("SGD_DATA")
    monkeypatch.delenv("SGD_ARCHIVES")
    assert S.data_dir() == PROJECT / "data"
    assert S.archive_dir() == PROJECT.parent / "shared" / "data"


# ----------------------------------------------------------------------------- the real archives
SHARED = S.archive_dir()
needs_shared = pytest.mark.skipif(
    not (SHARED / "mnist_sample.tgz").exists() and not S.cache_path(S.MNIST_SAMPLE).exists(),
    reason="neither the offline archives nor a provisioned cache are here",
)


@pytest.mark.skipif(not (SHARED / "mnist_sample.tgz").exists(), reason="no offline archives here")
@pytest.mark.parametrize("ds", list(S.DATASETS.values()), ids=list(S.DATASETS))
def test_shared_archive_checksum(ds):
    assert S.sha256_of(SHARED / ds.archive) == ds.sha256


@needs_shared
def test_real_3s_and_7s():
    d = D.load_3s_and_7s()
    assert {k: tuple(v.shape) for k, v in d.items()} == {
        "train_3": (6131, 28, 28),
        "train_7": (6265, 28, 28),
        "valid_3": (1010, 28, 28),
        "valid_7": (1028, 28, 28),
    }
    assert d["train_3"].dtype == torch.float32 and 0 <= d["train_3"].min() and d["train_3"].max() <= 1


@needs_shared
def test_real_mnist_split_and_pixels():
    m = D.load_mnist()
    assert m["train_x"].shape == (50_000, 784) and m["valid_x"].shape == (10_000, 784)
    assert m["test_x"].shape == (10_000, 784) and m["test_y"].dtype == torch.int64
    assert m["train_y"].min() == 0 and m["train_y"].max() == 9
    raw = S.load_raw(S.MNIST)
    assert S.tensors_crc32(S.MNIST, raw) == S.MNIST.crc32
    assert raw["training_idx"].tolist() == list(range(60_000))  # the original MNIST order
    assert raw["testing_idx"].tolist() == list(range(10_000))
    # The well-known first labels of MNIST's training and test files.
    assert m["train_y"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert m["valid_y"][:3].tolist() == raw["training_y"][50_000:50_003].tolist()
    assert m["test_y"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    folder = S.data_dir() / "mnist_png"
    if folder.is_dir():  # spot-check the cache against the PNGs themselves
        for i in (0, 12_345, 59_999):
            label = int(raw["training_y"][i])
            png = np.asarray(Image.open(folder / "training" / str(label) / f"{i}.png"))
            assert np.array_equal(png, raw["training_x"][i].numpy())


@needs_shared
def test_sample_is_a_subset_of_full_mnist():
    s, m = S.load_raw(S.MNIST_SAMPLE), S.load_raw(S.MNIST)
    assert S.tensors_crc32(S.MNIST_SAMPLE, s) == S.MNIST_SAMPLE.crc32
    i = s["train_idx"][:50]
    assert torch.equal(s["train_x"][:50], m["training_x"][i])
    j = s["valid_idx"][:50]
    assert torch.equal(s["valid_x"][:50], m["testing_x"][j])
