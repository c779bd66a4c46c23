"""Where MNIST lives on disk and how it gets there, safely, for any number of processes at once.

``helpers.data`` hands the lessons float tensors; this module provides the uint8 tensors behind them.
A dataset is named one way everywhere: its ``name`` (``mnist_sample``, ``mnist_png``) is the key of
``DATASETS``, the argument of ``python -m helpers provision``, the extracted folder, the archive
``<name>.tgz``, the cache file ``cache/<name>.pt`` and the lock ``.<name>.lock``. Its tensors are keyed
``<split>_x`` (uint8 [n, 28, 28]), ``<split>_y`` (int64 labels) and ``<split>_idx`` (int64 index in the
original MNIST file), where ``<split>`` is a top folder of the archive (``train``, ``valid``;
``training``, ``testing``).

Where the data comes from, in this order:

1. the tensor cache ``<data dir>/cache/<name>.pt``, trusted only when its dtypes, shapes, label
   counts, order and crc32 check out (the crc32 of the real datasets is in the manifest);
2. the extracted PNG folder ``<data dir>/<name>`` (fastai's ``untar_data`` layout), when its file
   counts are complete;
3. an offline archive ``$SGD_ARCHIVES/<name>.tgz`` (default ``../shared/data`` beside the project),
   checked against its sha256, extracted into a temporary folder and renamed into place;
4. fastai's ``untar_data(URLs.MNIST_SAMPLE)`` / ``untar_data(URLs.MNIST)``.

Many processes at once (a class on one JupyterHub, ``pytest -n``): reading a sound cache takes no
lock, because a cache is only ever replaced whole (``os.replace``). Anything that writes holds the
dataset's lock, the file ``<data dir>/.<name>.lock`` (``filelock``; the kernel releases it when its
holder dies, and the empty file may stay), looks again once it has it (another process may have done
the work meanwhile), and first removes what killed runs left: ``.<name>.partial-*`` (an extraction),
``.<name>.removing-*`` (a folder being deleted) and ``cache/.<name>.pt.*.tmp`` (a cache being written).
A process that has to wait says so once. Messages go to ``logging.getLogger("helpers.data")``:
progress at INFO (silent in a notebook unless logging is configured), trouble at WARNING; errors are
``DataError`` with what to do.

A class's shared folder (a JupyterHub): the instructor provisions it once and makes it read-only; every
learner's server gets ``SGD_DATA`` pointing at it and ``SGD_DATA_READONLY=1``. Then nothing here writes,
locks or creates anything (not even the folder): a sound cache is read as it is, and a missing or
incomplete folder is a ``DataError`` that names whom to ask (``SGD_DATA_ADMIN``, default the
instructor) and the command they run, instead of a copy being made in the learner's home.

For tests only: ``SGD_DATA_PAUSE=extract|decode|cache`` makes a process stop half-way through
extracting, half-way through decoding, or with its cache written but not yet renamed into place, so
that a test can kill it there.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DataError",
    "ChecksumError",
    "Dataset",
    "DATASETS",
    "MNIST_SAMPLE",
    "MNIST",
    "data_dir",
    "archive_dir",
    "lock_path",
    "cache_path",
    "missing_files",
    "temporaries",
    "sha256_of",
    "dataset_path",
    "decode",
    "tensors_crc32",
    "check_tensors",
    "load_raw",
    "provision",
    "shared_readonly",
    "check_shared",
]

log = logging.getLogger("helpers.data")


class DataError(RuntimeError):
    """The data could not be provided; the message says what to do about it."""


class ChecksumError(DataError):
    """An archive's sha256 differs from the one it should have."""


@dataclass(frozen=True)
class Dataset:
    """One dataset: its name, the archive's sha256, the fastai URL it stands for, what a complete copy holds.

    ``counts`` maps each image folder (relative to the extracted root) to its number of PNGs;
    ``splits`` maps each split to the folders it is made of (label = folder name); ``crc32`` is the
    checksum of the decoded tensors (``tensors_crc32``) when known.
    """

    name: str
    sha256: str
    fastai_url: str  # attribute of fastai's URLs
    counts: dict[str, int]
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)
    crc32: int | None = None

    @property
    def archive(self) -> str:
        """The offline archive's file name."""
        return f"{self.name}.tgz"

    @property
    def total(self) -> int:
        """How many images a complete copy holds."""
        return sum(self.counts.values())


def _digit_counts(split: str, counts: list[int]) -> dict[str, int]:
    return {f"{split}/{d}": n for d, n in enumerate(counts)}


MNIST_SAMPLE = Dataset(
    name="mnist_sample",
    sha256="98d677fff3d8be863844340ccf1f6e703f47800ae467823b8a4fe7edf9a74073",
    fastai_url="MNIST_SAMPLE",
    counts={"train/3": 6131, "train/7": 6265, "valid/3": 1010, "valid/7": 1028},
    splits={"train": ("train/3", "train/7"), "valid": ("valid/3", "valid/7")},
    crc32=3945978896,
)

MNIST = Dataset(
    name="mnist_png",
    sha256="0612e1c3c273532bf4b76ec6826afff97c87a669486ac3c78c807ab3737f81a5",
    fastai_url="MNIST",
    counts={
        **_digit_counts("training", [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]),
        **_digit_counts("testing", [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]),
    },
    splits={
        "training": tuple(f"training/{d}" for d in range(10)),
        "testing": tuple(f"testing/{d}" for d in range(10)),
    },
    crc32=3839937286,
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (MNIST_SAMPLE, MNIST)}

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_CACHE_VERSION = 2  # 2: int64 labels and indices, strictly increasing indices, crc32 of the tensors


def _dataset(ds: Dataset | str) -> Dataset:
    if isinstance(ds, Dataset):
        return ds
    if ds not in DATASETS:
        raise DataError(f"There is no dataset {ds!r}; the datasets are {', '.join(DATASETS)}.")
    return DATASETS[ds]


def _pause_if_asked(point: str) -> None:
    """Stop here for good when ``SGD_DATA_PAUSE`` names this point (tests kill the process here)."""
    if os.environ.get("SGD_DATA_PAUSE") == point:
        log.info("paused at %s (SGD_DATA_PAUSE)", point)
        while True:
            time.sleep(1)


# ----------------------------------------------------------------------------- locations
def data_dir() -> Path:
    """The folder that holds extracted datasets and the tensor cache."""
    if os.environ.get("SGD_DATA"):
        return Path(os.environ["SGD_DATA"]).expanduser()
    if (_PROJECT_ROOT / "data" / "README.md").exists():
        return _PROJECT_ROOT / "data"
    return Path(os.environ.get("FASTAI_HOME", "~/.fastai")).expanduser() / "data"


def archive_dir() -> Path:
    """The folder searched for offline archives (``$SGD_ARCHIVES``, default ``../shared/data``)."""
    if os.environ.get("SGD_ARCHIVES"):
        return Path(os.environ["SGD_ARCHIVES"]).expanduser()
    return _PROJECT_ROOT.parent / "shared" / "data"


def cache_path(ds: Dataset | str, root: Path | None = None) -> Path:
    """The tensor cache file of ``ds``."""
    return (Path(root) if root is not None else data_dir()) / "cache" / f"{_dataset(ds).name}.pt"


def lock_path(ds: Dataset | str, root: Path | None = None) -> Path:
    """The lock file that a process holds while it provides ``ds`` (it may stay, empty)."""
    return (Path(root) if root is not None else data_dir()) / f".{_dataset(ds).name}.lock"


def shared_readonly() -> bool:
    """Whether the data folder is a class's shared, read-only one (``SGD_DATA_READONLY=1``, set by the hub)."""
    return os.environ.get("SGD_DATA_READONLY", "").strip().lower() not in ("", "0", "false", "no")


def _shared_not_ready(root: Path, what: str) -> DataError:
    """The error a learner sees when the class's shared data folder is not ready: whom to ask, what they run."""
    who = os.environ.get("SGD_DATA_ADMIN", "").strip() or "your instructor (whoever runs this JupyterHub)"
    return DataError(
        f"The class's shared data folder {root} {what}. It is prepared once for the whole class and is read-only "
        f"for learners, so nothing was written to your home folder: ask {who} to run "
        f"`SGD_DATA={root} python -m helpers provision` as the folder's owner (on the demo hub: `make hub`), "
        "then run this cell again."
    )


def _missing_folder(root: Path) -> str:
    return "does not exist" if not root.exists() else "is not a folder"


def check_shared(root: Path | None = None) -> None:
    """Raise ``DataError`` (whom to ask, what to run) unless the shared folder holds every dataset, cached.

    Only looks (a cache file and a complete image folder per dataset): the caches themselves are checked
    when a lesson loads them. ``helpers.setup()`` calls it when ``SGD_DATA_READONLY`` is set.
    """
    root = Path(root) if root is not None else data_dir()
    if not root.is_dir():
        raise _shared_not_ready(root, _missing_folder(root))
    for ds in DATASETS.values():
        cp = cache_path(ds, root)
        if cp.exists() and not cp.is_file():
            raise _shared_not_ready(root, f"has a {cp.name} that is not a file")
        if not cp.exists():
            raise _shared_not_ready(root, f"has no tensor cache of {ds.name} ({cp.name})")
        bad = missing_files(ds, root / ds.name)
        if bad:
            raise _shared_not_ready(root, f"holds an incomplete {ds.name} ({_describe(bad)})")


def _writable(folder: Path) -> OSError | None:
    """None if files can be created in ``folder`` (made if missing), else the error that says why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        return e
    return None


def _not_writable(folder: Path, e: OSError) -> DataError:
    return DataError(
        f"The data folder {folder} is not writable ({e.strerror or e}). "
        "Set SGD_DATA to a folder you can write to, e.g. `export SGD_DATA=~/sgd-data`."
    )


# ----------------------------------------------------------------------------- checking a folder
def _png_count(folder: Path) -> int:
    try:
        return sum(1 for e in os.scandir(folder) if e.name.endswith(".png") and e.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return 0


def missing_files(ds: Dataset, root: Path) -> dict[str, tuple[int, int]]:
    """Folders of ``root`` whose PNG count is not what ``ds`` says: ``{folder: (found, expected)}``."""
    found = {f: _png_count(root / f) for f in ds.counts}
    return {f: (found[f], n) for f, n in ds.counts.items() if found[f] != n}


def _describe(bad: dict[str, tuple[int, int]]) -> str:
    shown = ", ".join(f"{f}: {a}/{b}" for f, (a, b) in sorted(bad.items())[:4])
    return shown + (" ..." if len(bad) > 4 else "")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def temporaries(ds: Dataset, root: Path) -> list[Path]:
    """What unfinished runs left for ``ds`` in ``root``: partial extractions, half-removed copies, cache temp files."""
    found = [*root.glob(f".{ds.name}.partial-*"), *root.glob(f".{ds.name}.removing-*")]
    return sorted(found + list((root / "cache").glob(f".{ds.name}.pt.*.tmp")))


def _delete(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    """Remove a file or folder by first renaming it away, so a half-deleted copy never keeps its name."""
    doomed = path.with_name(f".{path.name}.removing-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(path, doomed)
    _delete(doomed)


# ----------------------------------------------------------------------------- locking
@contextlib.contextmanager
def _locked(ds: Dataset, root: Path) -> Iterator[None]:
    """Hold ``ds``'s lock in ``root`` (one provider at a time); say once when another process has it."""
    from filelock import FileLock, Timeout  # imported here: a warm load never needs it

    path = lock_path(ds, root)
    lock = FileLock(path)
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.info("waiting for another process that is preparing %s in %s (it holds %s)", ds.name, root, path)
            lock.acquire()
    except OSError as e:
        raise DataError(f"Cannot use the lock file {path} ({e}): delete it and run again.") from e
    try:
        yield
    finally:
        lock.release()


def _clean_temporaries(ds: Dataset, root: Path) -> None:
    """Remove what killed runs left (call with the lock held: no live process owns them then)."""
    for p in temporaries(ds, root):
        log.info("removing %s, left by an unfinished run", p)
        _delete(p)


# ----------------------------------------------------------------------------- the folder
def _members(tf: tarfile.TarFile, ds: Dataset) -> Iterator[tarfile.TarInfo]:
    for i, member in enumerate(tf):
        if i == ds.total // 2:
            _pause_if_asked("extract")
        yield member


def _extract(ds: Dataset, archive: Path, root: Path) -> Path:
    """Extract ``archive`` into a temporary folder beside the target, check it, then rename it into place."""
    target = root / ds.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{ds.name}.partial-", dir=root))
    try:
        try:
            with tarfile.open(archive) as tf:
                # Its sha256 was checked just before: the archive is the known one, so tarfile's per-member
                # path checks (filter="data") would only make full MNIST's extraction 50% slower.
                tf.extractall(tmp, members=_members(tf, ds), filter="fully_trusted")
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DataError(
                f"The archive {archive} is corrupt or truncated ({type(e).__name__}: {e}). "
                f"Delete it and copy it again (its sha256 should be {ds.sha256})."
            ) from e
        except OSError as e:
            raise DataError(f"Could not extract {archive} into {root} ({e}). Check free space and permissions.") from e
        extracted = tmp / ds.name
        bad = missing_files(ds, extracted)
        if bad:
            raise DataError(
                f"The archive {archive} does not hold a complete {ds.name}: "
                + ", ".join(f"{f}: {a} of {b} images" for f, (a, b) in sorted(bad.items()))
                + ". Replace it with a good copy."
            )
        if target.exists() or target.is_symlink():
            _remove(target)
        os.rename(extracted, target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _download(ds: Dataset, root: Path) -> Path:
    """Download through fastai's ``untar_data`` (imported here only: lessons 00-02 never pay for it)."""
    from fastai.data.external import URLs, untar_data

    return Path(untar_data(getattr(URLs, ds.fastai_url), data=root))


def _is_offline_error(e: BaseException | None) -> bool:
    while e is not None:
        if isinstance(e, OSError):  # URLError, ConnectionError and TimeoutError are all OSErrors
            return True
        e = e.__cause__ or e.__context__
    return False


def _provide_folder(ds: Dataset, root: Path, archives: Path) -> Path:
    """The complete extracted folder of ``ds``, from the archive or the internet if needed (lock held)."""
    target = root / ds.name
    if target.is_dir() and not missing_files(ds, target):
        return target
    if target.exists() or target.is_symlink():
        what = "not a folder" if not target.is_dir() else f"incomplete ({_describe(missing_files(ds, target))})"
        log.info("%s is %s; repairing it.", target, what)
    archive = archives / ds.archive
    if archive.is_file():
        try:
            actual = sha256_of(archive)
        except OSError as e:
            raise DataError(f"Cannot read the archive {archive} ({e}): fix its permissions, or delete it.") from e
        if actual != ds.sha256:
            raise ChecksumError(
                f"Checksum mismatch for {archive}: sha256 is {actual}, expected {ds.sha256}. "
                "The file is damaged or is not the right archive: delete it and copy it again."
            )
        log.info("extracting %s into %s", archive, target)
        return _extract(ds, archive, root)
    # Online, the way learners get it. untar_data trusts any existing folder, so move a broken one away.
    if target.exists() or target.is_symlink():
        _remove(target)
    try:
        path = _download(ds, root)
    except Exception as e:
        if _is_offline_error(e):
            raise DataError(
                f"Cannot get {ds.name}: there is no decoded cache or complete folder in {root}, "
                f"no archive {ds.archive} in {archives}, and the download failed ({type(e).__name__}: {e}). "
                f"Connect to the internet, or put {ds.archive} in a folder and set SGD_ARCHIVES to it."
            ) from e
        raise
    bad = missing_files(ds, path)
    if bad:
        _remove(path)
        raise DataError(
            f"The download of {ds.name} is incomplete ({_describe(bad)}); it was removed. Run again to retry."
        )
    return path


def dataset_path(ds: Dataset | str, root: Path | None = None, archives: Path | None = None) -> Path:
    """The extracted PNG folder of ``ds``, complete; provided from an archive or the internet if needed."""
    ds = _dataset(ds)
    root = Path(root) if root is not None else data_dir()
    target = root / ds.name
    if target.is_dir() and not missing_files(ds, target):
        return target
    if shared_readonly():
        if not root.is_dir():
            raise _shared_not_ready(root, _missing_folder(root))
        raise _shared_not_ready(root, f"holds no complete {ds.name} ({_describe(missing_files(ds, target))})")
    if (e := _writable(root)) is not None:
        raise _not_writable(root, e)
    with _locked(ds, root):
        _clean_temporaries(ds, root)
        return _provide_folder(ds, root, Path(archives) if archives is not None else archive_dir())


# ----------------------------------------------------------------------------- decoding
_INDEX = re.compile(r"^(\d+)\.png$")


def _damaged(folder: Path, what: str) -> DataError:
    return DataError(
        f"{what}. The folder {folder} is damaged: delete it and run `python -m helpers provision` "
        "(or the lesson again) to extract a fresh copy."
    )


def _decode_folder(folder: Path, dataset_folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """All PNGs of an image folder as uint8 [n,28,28], with the index N of each file name ``N.png``."""
    from PIL import Image

    files = []
    for p in folder.glob("*.png"):
        m = _INDEX.match(p.name)
        if m is None:
            raise _damaged(dataset_folder, f"{p} is not named like an MNIST image (<index>.png)")
        files.append((int(m.group(1)), p))
    files.sort()
    idx = np.array([n for n, _ in files], dtype=np.int64)
    imgs = np.empty((len(files), 28, 28), dtype=np.uint8)
    for i, (_, p) in enumerate(files):
        try:
            with Image.open(p, formats=["PNG"]) as im:
                a = np.asarray(im if im.mode == "L" else im.convert("L"))
        except Exception as e:  # UnidentifiedImageError, "image file is truncated", IsADirectoryError, ...
            raise _damaged(dataset_folder, f"{p} is not a readable PNG ({type(e).__name__}: {e})") from e
        if a.shape != (28, 28):
            raise _damaged(dataset_folder, f"{p} is {a.shape[1]}x{a.shape[0]} pixels, not MNIST's 28x28")
        imgs[i] = a
        if i == len(files) // 2:
            _pause_if_asked("decode")
    return imgs, idx


def decode(ds: Dataset, folder: Path) -> dict[str, torch.Tensor]:
    """Decode every PNG of an extracted dataset into ``<split>_x`` (uint8), ``<split>_y``, ``<split>_idx``.

    Images are ordered by their index N in the original MNIST file, labels are the folder's digit.
    """
    out: dict[str, torch.Tensor] = {}
    for split, folders in ds.splits.items():
        xs, ys, idxs = [], [], []
        for f in folders:
            x, idx = _decode_folder(folder / f, folder)
            xs.append(x)
            idxs.append(idx)
            ys.append(np.full(len(idx), int(Path(f).name), dtype=np.int64))
        x, y, idx = np.concatenate(xs), np.concatenate(ys), np.concatenate(idxs)
        order = np.argsort(idx, kind="stable")
        out[f"{split}_x"] = torch.from_numpy(x[order])
        out[f"{split}_y"] = torch.from_numpy(y[order])
        out[f"{split}_idx"] = torch.from_numpy(idx[order])
    return out


# ----------------------------------------------------------------------------- checking tensors
def tensors_crc32(ds: Dataset, t: dict[str, torch.Tensor]) -> int:
    """The crc32 of every tensor's bytes, split by split, in the order x, y, idx (contiguous tensors)."""
    crc = 0
    for split in ds.splits:
        for k in ("x", "y", "idx"):
            crc = zlib.crc32(memoryview(t[f"{split}_{k}"].numpy()).cast("B"), crc)
    return crc


def check_tensors(ds: Dataset, t: object, stored_crc32: object = None) -> str | None:
    """Why ``t`` is not ``ds`` (dtypes, shapes, label counts, order, crc32), or None if it is."""
    if not isinstance(t, dict):
        return "not a dict of tensors"
    for split, folders in ds.splits.items():
        x, y, idx = (t.get(f"{split}_{k}") for k in ("x", "y", "idx"))
        n = sum(ds.counts[f] for f in folders)
        if not all(isinstance(v, torch.Tensor) and v.is_contiguous() and v.device.type == "cpu" for v in (x, y, idx)):
            return f"missing split {split!r}"
        if x.dtype != torch.uint8 or y.dtype != torch.int64 or idx.dtype != torch.int64:
            return f"of the wrong dtypes in split {split!r}"
        if tuple(x.shape) != (n, 28, 28) or tuple(y.shape) != (n,) or tuple(idx.shape) != (n,):
            return f"of the wrong shapes in split {split!r}"
        labels = {int(Path(f).name): ds.counts[f] for f in folders}
        if {int(k): int(c) for k, c in zip(*torch.unique(y, return_counts=True))} != labels:
            return f"of the wrong label counts in split {split!r}"
        if n and (idx[0] < 0 or not bool((idx[1:] > idx[:-1]).all())):
            return f"out of MNIST's order in split {split!r}"
    crc = tensors_crc32(ds, t)
    if ds.crc32 is not None and crc != ds.crc32:
        return f"not MNIST's images (crc32 {crc}, expected {ds.crc32})"
    if stored_crc32 is not None and crc != stored_crc32:
        return f"damaged (crc32 {crc}, stored {stored_crc32})"
    return None


# ----------------------------------------------------------------------------- the cache
def _read_cache(ds: Dataset, path: Path, say: bool) -> dict[str, torch.Tensor] | None:
    """The cached tensors if the cache is sound, else None (saying why when ``say``)."""
    if not path.exists():
        return None
    if not path.is_file():
        raise DataError(f"{path} should be the cache file of {ds.name} but is not a file: delete it and run again.")
    try:
        t = torch.load(path, weights_only=True)
    except Exception as e:  # truncated zip, garbage bytes, pickled objects refused by weights_only
        why = f"unreadable ({type(e).__name__})"
    else:
        if not isinstance(t, dict):
            why = "not a dict of tensors"
        elif not (isinstance(v := t.get("version"), torch.Tensor) and v.numel() == 1 and v.item() == _CACHE_VERSION):
            why = "written by another version"
        elif not (isinstance(c := t.get("crc32"), torch.Tensor) and c.numel() == 1):
            why = "without its checksum"
        else:
            why = check_tensors(ds, t, int(c.item()))
        if why is None:
            return {k: v for k, v in t.items() if k not in ("version", "crc32")}
    if say:
        log.info("the cache %s is %s; rebuilding it.", path, why)
    return None


def _write_cache(ds: Dataset, t: dict[str, torch.Tensor], path: Path) -> None:
    """Write the cache whole or not at all: a temporary file, renamed into place."""
    if path.parent.exists() and not path.parent.is_dir():
        raise DataError(f"{path.parent} should be the cache folder but is not a folder: delete it and run again.")
    if path.is_dir():
        raise DataError(f"{path} should be the cache file of {ds.name} but is a folder: delete it and run again.")
    obj = {**t, "version": torch.tensor(_CACHE_VERSION), "crc32": torch.tensor(tensors_crc32(ds, t))}
    tmp = None
    try:
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.chmod(tmp, 0o644)  # readable by everyone who shares the data folder (mkstemp makes it 0600)
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        _pause_if_asked("cache")
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
        log.warning("could not write the cache %s (%s); continuing without it.", path, e)
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _decode_checked(ds: Dataset, folder: Path) -> dict[str, torch.Tensor]:
    log.info("decoding %d images of %s", ds.total, folder)
    t = decode(ds, folder)
    why = check_tensors(ds, t)
    if why is not None:
        raise _damaged(folder, f"The images of {folder} decode to tensors that are {why}")
    return t


def load_raw(ds: Dataset | str, root: Path | None = None, archives: Path | None = None) -> dict[str, torch.Tensor]:
    """The whole dataset as uint8 image tensors, from the cache when it is sound (provided and cached when not)."""
    ds = _dataset(ds)
    root = Path(root) if root is not None else data_dir()
    cp = cache_path(ds, root)
    readonly = shared_readonly()
    if readonly and (cp.exists() or cp.is_symlink()) and not cp.is_file():
        raise _shared_not_ready(root, f"has a {cp.name} that is not a file")
    t = _read_cache(ds, cp, say=not readonly)
    if t is not None:
        return t
    if readonly:  # never lock, decode or write here: say whom to ask
        if not root.is_dir():
            raise _shared_not_ready(root, _missing_folder(root))
        why = "has no" if not cp.exists() else "has a damaged"
        raise _shared_not_ready(root, f"{why} tensor cache of {ds.name} ({cp.name})")
    if (e := _writable(root)) is not None:
        folder = root / ds.name
        if not (folder.is_dir() and not missing_files(ds, folder)):
            raise _not_writable(root, e)
        log.warning(
            "%s is not writable: decoding %s without a cache, slowly, every time. "
            "Run `python -m helpers provision` with write access to it once.",
            root,
            ds.name,
        )
        return _decode_checked(ds, folder)
    with _locked(ds, root):
        t = _read_cache(ds, cp, say=False)  # another process may have built it while this one waited
        if t is not None:
            return t
        _clean_temporaries(ds, root)
        folder = _provide_folder(ds, root, Path(archives) if archives is not None else archive_dir())
        t = _decode_checked(ds, folder)
        _write_cache(ds, t, cp)
        return t


def provision(
    datasets: list[Dataset | str] | None = None, root: Path | None = None, archives: Path | None = None
) -> None:
    """Make the datasets ready (folder checked, cache built, leftovers of killed runs removed): set-up runs this."""
    root = Path(root) if root is not None else data_dir()
    for name in datasets or list(DATASETS):
        ds = _dataset(name)
        t0 = time.perf_counter()
        raw = load_raw(ds, root, archives)
        if not shared_readonly() and _writable(root) is None:
            with _locked(ds, root):
                _clean_temporaries(ds, root)
        n = sum(v.shape[0] for k, v in raw.items() if k.endswith("_x"))
        log.info("%s: %d images ready in %s (%.1f s)", ds.name, n, cache_path(ds, root), time.perf_counter() - t0)
