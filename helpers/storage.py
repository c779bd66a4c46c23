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
   checked against its sha256, every member checked (none may be written outside the folder, through a
   link, or be a device), extracted into a temporary folder and renamed into place;
4. the archive of fastai's ``URLs.MNIST_SAMPLE`` / ``URLs.MNIST``, downloaded as ``untar_data`` does
   (into fastai's archive folder, checked against fastai's size and hash), then extracted as in 3.

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
        try:
            _delete(p)
        except OSError as e:  # another user's, in a shared folder: in nobody's way, but it takes room
            log.warning("could not remove %s, left by an unfinished run (%s); its owner can delete it.", p, e)


# ----------------------------------------------------------------------------- the folder
_SEPARATORS = re.compile(r"[/\\]")  # the same on every platform: an archive safe on Linux is safe on Windows


def _parts(name: str) -> tuple[str, ...] | str:
    """A member name or link target split into its parts ("" and "." dropped), or why it is unsafe."""
    if name.startswith(("/", "\\")):
        return "an absolute name"
    parts = tuple(p for p in _SEPARATORS.split(name) if p not in ("", "."))
    if any(":" in p for p in parts):
        return "a name with ':' (a drive or a stream on Windows)"
    return parts


def _first_unsafe(members: list[tarfile.TarInfo]) -> tuple[tarfile.TarInfo, str] | None:
    """The first member that could write outside the extraction folder, and why; None when there is none.

    Checked on the names alone, before anything is written, and the same on every platform: names are
    relative and have no ``..``; members are files, folders and links only (no devices, no FIFOs); a link's
    target, resolved from where the link is (a hard link's from the top), stays inside the folder and
    passes through no link of the archive; a hard link points to an earlier file; no member is written
    into or over an earlier link. In a fresh folder, where nothing but the archive's members exists,
    resolving names by their parts is then what the file system does, so nothing can land outside.
    """
    parts = [_parts(m.name) for m in members]
    links = {p for m, p in zip(members, parts) if isinstance(p, tuple) and (m.issym() or m.islnk())}
    files: set[tuple[str, ...]] = set()
    earlier_links: set[tuple[str, ...]] = set()
    for m, p in zip(members, parts):
        if isinstance(p, str):
            return m, p
        if ".." in p:
            return m, "a name with '..'"
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
            kind = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "FIFO"}
            return m, f"a {kind.get(m.type, f'member of tar type {m.type!r}')}, not a file, folder or link"
        if not p and not m.isdir():
            return m, "a name that is the extraction folder itself"
        through = next((p[:i] for i in range(1, len(p)) if p[:i] in earlier_links), None)
        if through is not None:
            return m, f"written through the link {'/'.join(through)!r}"
        if p in earlier_links:
            return m, f"written over the link {'/'.join(p)!r}"
        if m.issym() or m.islnk():
            what = "symbolic link" if m.issym() else "hard link"
            target = _parts(m.linkname)
            if isinstance(target, str):
                return m, f"a {what} to {m.linkname!r}, {target}"
            resolved = list(p[:-1] if m.issym() else ())
            for part in target:
                if part != "..":
                    resolved.append(part)
                    if tuple(resolved) in links:
                        return m, f"a {what} to {m.linkname!r}, through the link {'/'.join(resolved)!r}"
                elif resolved:
                    resolved.pop()
                else:
                    return m, f"a {what} to {m.linkname!r}, outside the extraction folder"
            if m.islnk() and tuple(resolved) not in files:
                return m, f"a hard link to {m.linkname!r}, which is not an earlier file of the archive"
            earlier_links.add(p)
        elif m.isreg():
            files.add(p)
    return None


def _as_data(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
    """What tarfile's ``data`` filter does to a member's attributes; its names and links were checked before.

    No owner is set; files keep their permission bits less set-id and group or other write bits, and
    are readable and writable by their owner; folders and links get the default mode. The checks of
    names and links are ``_first_unsafe``'s, on the whole list before extraction: the ``data`` filter's
    own resolve each member's path on disk, for every member (benchmarks/bench_extract.py). The member
    is changed in place (it comes from a list read for this extraction only), which spares a copy of each.
    """
    mode = None
    if member.isreg() or member.islnk():
        mode = member.mode & 0o755
        if not mode & 0o100:
            mode &= ~0o111
        mode |= 0o600
    member.mode, member.uid, member.gid, member.uname, member.gname = mode, None, None, None, None
    return member


def _members(members: list[tarfile.TarInfo], ds: Dataset) -> Iterator[tarfile.TarInfo]:
    for i, member in enumerate(members):
        if i == ds.total // 2:
            _pause_if_asked("extract")
        yield member


def _extract(ds: Dataset, archive: Path, root: Path, downloaded: bool = False) -> Path:
    """Check every member of ``archive``, extract it beside the target, check its files, rename it into place.

    The archive's checksum was checked before (``ds.sha256``, or fastai's size and hash when it was
    ``downloaded``), but a checksum says which archive this is, not that it is harmless (a new pin, a
    fork's dataset, a re-hosted download): an archive with a member that could be written outside the
    folder is refused before anything is written. A downloaded archive that cannot be used is deleted,
    so that the next run downloads it again.
    """
    if downloaded:
        vouched = f"It is fastai's archive for URLs.{ds.fastai_url}, with the size and hash fastai expects; "
        unsafe_fix = "it was deleted. Put this project's offline archive in SGD_ARCHIVES instead."
        again = other = "It was deleted: run again to download it again."
    else:
        vouched = f"Its sha256 is the one pinned for {ds.name} (DATASETS in helpers/storage.py), "
        unsafe_fix = "so that pin is of an unsafe archive: pack the dataset again without such members, pin that."
        again = f"Delete it and copy it again (its sha256 should be {ds.sha256})."
        other = "Replace it with a good copy."

    def unusable(message: str) -> DataError:
        if downloaded:
            archive.unlink(missing_ok=True)
        return DataError(message)

    target = root / ds.name
    tmp = None
    try:
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            unsafe = _first_unsafe(members)
            if unsafe is not None:
                member, why = unsafe
                raise unusable(
                    f"The archive {archive} holds a member that could be written outside the folder it is "
                    f"extracted into: {member.name!r} is {why}. Nothing was extracted. {vouched}{unsafe_fix}"
                )
            tmp = Path(tempfile.mkdtemp(prefix=f".{ds.name}.partial-", dir=root))
            tf.extractall(tmp, members=_members(members, ds), filter=_as_data)
        extracted = tmp / ds.name
        bad = missing_files(ds, extracted)
        if bad:
            raise unusable(
                f"The archive {archive} does not hold a complete {ds.name}: "
                + ", ".join(f"{f}: {a} of {b} images" for f, (a, b) in sorted(bad.items()))
                + f". {other}"
            )
        if target.exists() or target.is_symlink():
            _remove(target)
        os.rename(extracted, target)
        return target
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise unusable(f"The archive {archive} is corrupt or truncated ({type(e).__name__}: {e}). {again}") from e
    except OSError as e:
        raise DataError(f"Could not extract {archive} into {root} ({e}). Check free space and permissions.") from e
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _download(ds: Dataset) -> Path:
    """Download the archive of ``ds`` as fastai's ``untar_data`` does, without extracting it; its path.

    fastai's ``FastDownload`` puts it in fastai's archive folder (``~/.fastai/archive``, which
    ``untar_data`` shares), checked against fastai's own size and hash, while this process holds the
    lock file that ``untar_data`` takes. ``_extract`` then checks and extracts it: ``untar_data`` would
    extract any member wherever it points. fastai is imported here only: lessons 00-02 never pay for it.
    """
    import fastai.data
    from fastai.data.external import URLs, fastai_cfg
    from fastdownload import FastDownload
    from filelock import FileLock

    url = getattr(URLs, ds.fastai_url)
    fd = FastDownload(fastai_cfg(), module=fastai.data, base="~/.fastai")
    folder = fd.arch_path()
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(folder / f"{Path(url).name}.lock"):
        return Path(fd.download(url))


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
    # Online, the way learners get it: fastai downloads the archive, checked and extracted here.
    nothing_here = (
        f"Cannot get {ds.name}: there is no decoded cache or complete folder in {root}, "
        f"no archive {ds.archive} in {archives}"
        + (" (which is a file: SGD_ARCHIVES names the folder that holds the archives)" if archives.is_file() else "")
    )
    put_archive = (
        f"put the archive {ds.archive} (sha256 {ds.sha256}, as pinned in helpers/storage.py) in {archives}, "
        "or set SGD_ARCHIVES to the folder that holds it"
    )
    try:
        downloaded = _download(ds)
    except ImportError as e:
        raise DataError(
            f"{nothing_here}, and fastai, which would download it, cannot be imported ({type(e).__name__}: {e}). "
            f"Either {put_archive}; or install fastai (`pip install fastai`) and run again to download it."
        ) from e
    except Exception as e:
        if _is_offline_error(e):
            raise DataError(
                f"{nothing_here}, and the download failed ({type(e).__name__}: {e}). "
                f"Connect to the internet, or {put_archive}."
            ) from e
        raise DataError(
            f"{nothing_here}, and fastai's download of it failed ({type(e).__name__}: {e}). "
            f"Run again to retry, or {put_archive}."
        ) from e
    log.info("extracting %s into %s", downloaded, target)
    return _extract(ds, downloaded, root, downloaded=True)


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
