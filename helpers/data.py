"""MNIST for the lessons: find it, check it, decode it once, and hand out tensors.

Where the data comes from, in this order:

1. the decoded-tensor cache (``<data dir>/cache/<name>.pt``): one file of uint8 tensors per
   dataset, loaded with ``torch.load(weights_only=True)``; rebuilt when missing or corrupt;
2. the extracted PNG folder (``<data dir>/<name>``), the layout fastai's ``untar_data`` makes;
   used only when its file counts are complete, repaired when they are not;
3. an offline archive (``$SGD_ARCHIVES/<name>.tgz``, default ``../shared/data`` beside the
   project), checked against its sha256 and extracted atomically;
4. fastai's ``untar_data(URLs.MNIST_SAMPLE)`` / ``untar_data(URLs.MNIST)``: the way real users
   download it.

The data dir is ``$SGD_DATA`` if set, else ``data/`` in the project checkout, else fastai's own
data folder (``~/.fastai/data``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import sys
import tarfile
import tempfile
import time
import zlib
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
    "dataset_path",
    "load_raw",
    "load_3s_and_7s",
    "load_mnist",
    "provision",
]


class DataError(RuntimeError):
    """The data could not be provided; the message says what to do about it."""


class ChecksumError(DataError):
    """An archive's sha256 differs from the one it should have."""


@dataclass(frozen=True)
class Dataset:
    """One dataset: its archive, the fastai URL it stands for, and what a complete copy holds.

    ``counts`` maps each image folder (relative to the extracted root) to its number of PNGs;
    ``splits`` maps each split name to the folders it is made of (label = folder name).
    """

    name: str
    archive: str
    sha256: str
    fastai_url: str  # attribute of fastai's URLs
    counts: dict[str, int]
    splits: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _digit_counts(split: str, counts: list[int]) -> dict[str, int]:
    return {f"{split}/{d}": n for d, n in enumerate(counts)}


MNIST_SAMPLE = Dataset(
    name="mnist_sample",
    archive="mnist_sample.tgz",
    sha256="98d677fff3d8be863844340ccf1f6e703f47800ae467823b8a4fe7edf9a74073",
    fastai_url="MNIST_SAMPLE",
    counts={"train/3": 6131, "train/7": 6265, "valid/3": 1010, "valid/7": 1028},
    splits={"train": ("train/3", "train/7"), "valid": ("valid/3", "valid/7")},
)

MNIST = Dataset(
    name="mnist_png",
    archive="mnist_png.tgz",
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
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (MNIST_SAMPLE, MNIST)}

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_CACHE_VERSION = 1


def _say(msg: str) -> None:
    print(f"[helpers.data] {msg}", file=sys.stderr)


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


def _ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise DataError(
            f"The data folder {folder} is not writable ({e.strerror or e}). "
            "Set SGD_DATA to a folder you can write to, e.g. `export SGD_DATA=~/sgd-data`."
        ) from e


# ----------------------------------------------------------------------------- checking
def _png_count(folder: Path) -> int:
    try:
        return sum(1 for e in os.scandir(folder) if e.name.endswith(".png"))
    except FileNotFoundError:
        return 0


def missing_files(ds: Dataset, root: Path) -> dict[str, tuple[int, int]]:
    """Folders of ``root`` whose PNG count is not what ``ds`` says: ``{folder: (found, expected)}``."""
    found = {f: _png_count(root / f) for f in ds.counts}
    return {f: (found[f], n) for f, n in ds.counts.items() if found[f] != n}


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- provisioning
def _extract_atomically(ds: Dataset, archive: Path, dest_root: Path) -> Path:
    """Extract ``archive`` into a hidden temp folder beside the target, check it, then rename it."""
    target = dest_root / ds.name
    tmp = Path(tempfile.mkdtemp(prefix=f".{ds.name}.partial-", dir=dest_root))
    try:
        try:
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise DataError(
                f"The archive {archive} is corrupt or truncated ({type(e).__name__}: {e}). "
                f"Delete it and copy it again (its sha256 should be {ds.sha256})."
            ) from e
        except OSError as e:
            raise DataError(
                f"Could not extract {archive} into {dest_root} ({e}). Check free space and permissions."
            ) from e
        extracted = tmp / ds.name
        bad = missing_files(ds, extracted)
        if bad:
            raise DataError(
                f"The archive {archive} does not hold a complete {ds.name}: "
                + ", ".join(f"{f}: {a} of {b} images" for f, (a, b) in sorted(bad.items()))
                + ". Replace it with a good copy."
            )
        if target.exists():
            _remove(target)
        os.rename(extracted, target)
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _remove(path: Path) -> None:
    """Remove a folder by first renaming it away, so a half-deleted copy never keeps its name."""
    doomed = path.with_name(f".{path.name}.removing-{os.getpid()}-{time.monotonic_ns()}")
    os.rename(path, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def _clean_partials(ds: Dataset, root: Path) -> None:
    for p in root.glob(f".{ds.name}.*-*"):
        shutil.rmtree(p, ignore_errors=True)


def _download(ds: Dataset, root: Path) -> Path:
    """Download through fastai's ``untar_data`` (imported here only: lessons 00-02 never pay for it)."""
    from fastai.data.external import URLs, untar_data

    return Path(untar_data(getattr(URLs, ds.fastai_url), data=root))


def _is_offline_error(e: BaseException) -> bool:
    while e is not None:
        if isinstance(e, OSError):  # URLError, ConnectionError and TimeoutError are all OSErrors
            return True
        e = e.__cause__ or e.__context__
    return False


def dataset_path(ds: Dataset | str, root: Path | None = None, archives: Path | None = None) -> Path:
    """The extracted PNG folder of ``ds``, complete; provided from an archive or the internet if needed."""
    ds = DATASETS[ds] if isinstance(ds, str) else ds
    root = Path(root) if root is not None else data_dir()
    archives = Path(archives) if archives is not None else archive_dir()
    target = root / ds.name
    if target.is_dir() and not missing_files(ds, target):
        return target
    _ensure_writable(root)
    _clean_partials(ds, root)
    if target.exists():
        _say(f"{target} is incomplete ({_describe(missing_files(ds, target))}); repairing it.")
    archive = archives / ds.archive
    if archive.is_file():
        actual = sha256_of(archive)
        if actual != ds.sha256:
            raise ChecksumError(
                f"Checksum mismatch for {archive}: sha256 is {actual}, expected {ds.sha256}. "
                "The file is damaged or is not the right archive: delete it and copy it again."
            )
        _say(f"extracting {archive} into {target}")
        return _extract_atomically(ds, archive, root)
    # Online, the way learners get it. untar_data trusts any existing folder, so move a broken one away.
    if target.exists():
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


def _describe(bad: dict[str, tuple[int, int]]) -> str:
    if not bad:
        return "complete"
    return ", ".join(f"{f}: {a}/{b}" for f, (a, b) in sorted(bad.items())[:4]) + (" ..." if len(bad) > 4 else "")


# ----------------------------------------------------------------------------- decoding and cache
_INDEX = re.compile(r"(\d+)\.png$")


def _decode_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """All PNGs of a folder as uint8 [n,28,28], with the index N of each file name ``N.png``."""
    from PIL import Image

    files = sorted((int(_INDEX.search(p.name).group(1)), p) for p in folder.glob("*.png"))
    idx = np.array([n for n, _ in files], dtype=np.int64)
    imgs = np.empty((len(files), 28, 28), dtype=np.uint8)
    for i, (_, p) in enumerate(files):
        with Image.open(p) as im:
            a = np.asarray(im if im.mode == "L" else im.convert("L"))
        if a.shape != (28, 28):
            raise DataError(f"{p} is {a.shape[1]}x{a.shape[0]} pixels, not 28x28: the dataset is not MNIST.")
        imgs[i] = a
    return imgs, idx


def decode(ds: Dataset, folder: Path) -> dict[str, torch.Tensor]:
    """Decode every PNG of an extracted dataset into ``{split}_x`` (uint8), ``{split}_y``, ``{split}_idx``.

    Images are ordered by their index N in the original MNIST file, labels are the folder's digit.
    """
    out: dict[str, torch.Tensor] = {}
    for split, folders in ds.splits.items():
        xs, ys, idxs = [], [], []
        for f in folders:
            x, idx = _decode_folder(folder / f)
            xs.append(x)
            idxs.append(idx)
            ys.append(np.full(len(idx), int(Path(f).name), dtype=np.int64))
        x, y, idx = np.concatenate(xs), np.concatenate(ys), np.concatenate(idxs)
        order = np.argsort(idx, kind="stable")
        out[f"{split}_x"] = torch.from_numpy(x[order])
        out[f"{split}_y"] = torch.from_numpy(y[order])
        out[f"{split}_idx"] = torch.from_numpy(idx[order])
    return out


def cache_path(ds: Dataset, root: Path | None = None) -> Path:
    return (Path(root) if root is not None else data_dir()) / "cache" / f"{ds.name}.pt"


def _check_cache(ds: Dataset, t: object) -> str | None:
    """Why a loaded cache cannot be used, or None if it is sound."""
    if not isinstance(t, dict):
        return "not a dict of tensors"
    v = t.get("version")
    if not isinstance(v, torch.Tensor) or v.numel() != 1 or v.item() != _CACHE_VERSION:
        return "written by another version"
    for split, folders in ds.splits.items():
        x, y, idx = (t.get(f"{split}_{k}") for k in ("x", "y", "idx"))
        n = sum(ds.counts[f] for f in folders)
        if not all(isinstance(v, torch.Tensor) for v in (x, y, idx)):
            return f"split {split!r} is missing"
        if x.dtype != torch.uint8 or tuple(x.shape) != (n, 28, 28) or y.shape != (n,) or idx.shape != (n,):
            return f"split {split!r} has the wrong shape or type"
        labels = {int(Path(f).name): ds.counts[f] for f in folders}
        if {int(k): int(v) for k, v in zip(*torch.unique(y, return_counts=True))} != labels:
            return f"split {split!r} has the wrong label counts"
    return None


def _save_atomically(obj: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_raw(ds: Dataset | str, root: Path | None = None, archives: Path | None = None) -> dict[str, torch.Tensor]:
    """The whole dataset as uint8 image tensors, from the cache when it is sound (built when not)."""
    ds = DATASETS[ds] if isinstance(ds, str) else ds
    root = Path(root) if root is not None else data_dir()
    cp = cache_path(ds, root)
    if cp.is_file():
        try:
            t = torch.load(cp, weights_only=True)
            why = _check_cache(ds, t)
        except Exception as e:  # truncated zip, garbage bytes, pickled objects refused by weights_only
            why = f"unreadable ({type(e).__name__})"
        if why is None:
            return {k: v for k, v in t.items() if k != "version"}
        _say(f"the cache {cp} is {why}; rebuilding it.")
    folder = dataset_path(ds, root, archives)
    t = decode(ds, folder)
    why = _check_cache(ds, {**t, "version": torch.tensor(_CACHE_VERSION)})
    if why is not None:
        raise DataError(f"Decoding {folder} gave a dataset that {why}: delete {folder} and run again.")
    try:
        _ensure_writable(cp.parent)
        _save_atomically({**t, "version": torch.tensor(_CACHE_VERSION)}, cp)
    except (DataError, OSError) as e:
        _say(f"could not write the cache {cp} ({e}); continuing without it.")
    return t


def provision(names: list[str] | None = None) -> None:
    """Make every dataset ready (folder checked, cache built): what set-up runs once."""
    for name in names or list(DATASETS):
        t0 = time.perf_counter()
        raw = load_raw(name)
        n = sum(v.shape[0] for k, v in raw.items() if k.endswith("_x"))
        print(f"{name}: {n} images ready in {cache_path(DATASETS[name])} ({time.perf_counter() - t0:.1f} s)")


# ----------------------------------------------------------------------------- what lessons use
def _to_float(x: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    return x.to(device=device).float().div_(255)


def load_3s_and_7s(device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The 3-vs-7 sample as float images in [0, 1], shape [n, 28, 28], ordered by MNIST index.

    Keys: ``train_3``, ``train_7``, ``valid_3``, ``valid_7``.
    """
    raw = load_raw(MNIST_SAMPLE)
    out = {}
    for split in ("train", "valid"):
        x, y = raw[f"{split}_x"], raw[f"{split}_y"]
        for d in (3, 7):
            out[f"{split}_{d}"] = _to_float(x[y == d], device)
    return out


def load_mnist(device: torch.device | str | None = None, flat: bool = True) -> dict[str, torch.Tensor]:
    """Full MNIST as float pixels in [0, 1] and int64 labels 0..9.

    ``train`` is the original training set's first 50,000 images, ``valid`` its last 10,000 and
    ``test`` the 10,000 testing images. Keys: ``x_train, y_train, x_valid, y_valid, x_test, y_test``;
    images are [n, 784] when ``flat`` else [n, 28, 28].
    """
    raw = load_raw(MNIST)
    x, y = raw["training_x"], raw["training_y"]
    parts = {
        "train": (x[:50_000], y[:50_000]),
        "valid": (x[50_000:], y[50_000:]),
        "test": (raw["testing_x"], raw["testing_y"]),
    }
    out = {}
    for name, (xi, yi) in parts.items():
        xi = _to_float(xi, device)
        out[f"x_{name}"] = xi.view(len(xi), -1) if flat else xi
        out[f"y_{name}"] = yi.to(device)
    return out


