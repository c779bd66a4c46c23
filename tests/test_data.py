"""The data layer: small archives built here, every bad input, and the real archives when present."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import urllib.error
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import data as D

TINY_COUNTS = {"train/3": 3, "train/7": 2, "valid/3": 1, "valid/7": 2}
# Indices chosen so that sorting by file name ("10" < "2") and by number differ.
TINY_INDEX = {"train/3": [10, 2, 33], "train/7": [5, 100], "valid/3": [7], "valid/7": [11, 3]}


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


@pytest.fixture
def tiny(tmp_path):
    """A tiny dataset spec, its archive folder, an empty data folder and the source pixels."""
    archives = tmp_path / "archives"
    archives.mkdir()
    archive = archives / "tiny_mnist.tgz"
    pixels = make_archive(archive, "tiny_mnist")
    ds = replace(
        D.MNIST_SAMPLE, name="tiny_mnist", archive="tiny_mnist.tgz", sha256=sha(archive), counts=dict(TINY_COUNTS)
    )
    root = tmp_path / "data"
    return ds, root, archives, pixels


def leftovers(root: Path, name: str) -> list[str]:
    return sorted(p.name for p in root.glob(f".{name}*")) if root.exists() else []


def no_network(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


# ----------------------------------------------------------------------------- the good path
def test_extract_decode_and_cache(tiny):
    ds, root, archives, pixels = tiny
    t = D.load_raw(ds, root, archives)
    assert t["train_x"].dtype == torch.uint8 and t["train_x"].shape == (5, 28, 28)
    assert t["train_idx"].tolist() == [2, 5, 10, 33, 100]  # ordered by the number N, not the name
    assert t["train_y"].tolist() == [3, 7, 3, 3, 7]
    assert t["valid_idx"].tolist() == [3, 7, 11] and t["valid_y"].tolist() == [7, 3, 7]
    assert np.array_equal(t["train_x"][2].numpy(), pixels[("train/3", 10)])
    assert np.array_equal(t["valid_x"][0].numpy(), pixels[("valid/7", 3)])
    assert D.missing_files(ds, root / "tiny_mnist") == {}
    assert D.cache_path(ds, root).is_file()
    assert leftovers(root, "tiny_mnist") == []


def test_warm_load_needs_neither_folder_nor_archive(tiny, monkeypatch):
    ds, root, archives, _ = tiny
    first = D.load_raw(ds, root, archives)
    (archives / ds.archive).unlink()
    D._remove(root / ds.name)
    monkeypatch.setattr(D, "_download", no_network)
    again = D.load_raw(ds, root, archives)
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_cache_is_plain_tensors_loaded_with_weights_only(tiny):
    ds, root, archives, _ = tiny
    D.load_raw(ds, root, archives)
    t = torch.load(D.cache_path(ds, root), weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in t.values())


@pytest.mark.parametrize("damage", ["garbage", "truncated", "pickled object", "wrong shape"])
def test_corrupt_cache_is_rebuilt(tiny, capsys, damage):
    ds, root, archives, _ = tiny
    good = D.load_raw(ds, root, archives)
    cp = D.cache_path(ds, root)
    if damage == "garbage":
        cp.write_bytes(b"not a torch file")
    elif damage == "truncated":
        cp.write_bytes(cp.read_bytes()[: cp.stat().st_size // 2])
    elif damage == "pickled object":
        torch.save({"train_x": Path("/etc/passwd")}, cp)
    else:
        torch.save({**good, "train_x": good["train_x"][:2], "version": torch.tensor(1)}, cp)
    capsys.readouterr()
    again = D.load_raw(ds, root, archives)
    assert "rebuilding it" in capsys.readouterr().err
    assert all(torch.equal(good[k], again[k]) for k in good)
    assert D._check_cache(ds, torch.load(cp, weights_only=True)) is None


# ----------------------------------------------------------------------------- bad archives
def test_wrong_checksum(tiny):
    ds, root, archives, _ = tiny
    bad = replace(ds, sha256="0" * 64)
    with pytest.raises(D.ChecksumError) as e:
        D.load_raw(bad, root, archives)
    msg = str(e.value)
    assert "Checksum mismatch" in msg and "0" * 64 in msg and ds.sha256 in msg
    assert "delete it and copy it again" in msg
    assert not (root / ds.name).exists() and leftovers(root, ds.name) == []


@pytest.mark.parametrize("kind", ["garbage", "truncated"])
def test_corrupt_archive(tiny, kind):
    ds, root, archives, _ = tiny
    archive = archives / ds.archive
    if kind == "garbage":
        archive.write_bytes(b"\x1f\x8b" + os.urandom(500))
    else:
        archive.write_bytes(archive.read_bytes()[:-300])
    ds = replace(ds, sha256=sha(archive))  # the checksum is right: the archive itself is bad
    with pytest.raises(D.DataError) as e:
        D.load_raw(ds, root, archives)
    assert "is corrupt or truncated" in str(e.value) and "copy it again" in str(e.value)
    assert not (root / ds.name).exists(), "a broken extraction must not leave a folder untar_data would accept"
    assert leftovers(root, ds.name) == []
    assert not D.cache_path(ds, root).exists()


def test_archive_missing_files(tiny):
    ds, root, archives, _ = tiny
    archive = archives / ds.archive
    make_archive(archive, ds.name, skip=2)
    ds = replace(ds, sha256=sha(archive))
    with pytest.raises(D.DataError, match=r"does not hold a complete tiny_mnist: train/3: 1 of 3 images"):
        D.load_raw(ds, root, archives)
    assert not (root / ds.name).exists() and leftovers(root, ds.name) == []


def test_interrupted_extraction_leaves_nothing(tiny, monkeypatch):
    ds, root, archives, _ = tiny
    real = tarfile.TarFile.extractall

    def killed(self, *a, **k):
        real(self, *a, **k)
        raise KeyboardInterrupt  # as if the kernel were interrupted before the rename

    monkeypatch.setattr(tarfile.TarFile, "extractall", killed)
    with pytest.raises(KeyboardInterrupt):
        D.load_raw(ds, root, archives)
    assert not (root / ds.name).exists() and leftovers(root, ds.name) == []
    monkeypatch.undo()
    assert D.load_raw(ds, root, archives)["train_x"].shape == (5, 28, 28)


def test_stale_partial_folders_are_cleaned(tiny):
    ds, root, archives, _ = tiny
    (root / f".{ds.name}.partial-abc123" / ds.name / "train").mkdir(parents=True)
    D.load_raw(ds, root, archives)
    assert leftovers(root, ds.name) == []


# ----------------------------------------------------------------------------- bad folders
@pytest.mark.parametrize("files", [0, 1])
def test_incomplete_folder_is_repaired(tiny, capsys, files):
    ds, root, archives, pixels = tiny
    folder = root / ds.name / "train" / "3"
    folder.mkdir(parents=True)
    for n in [10][:files]:
        (folder / f"{n}.png").write_bytes(_png(pixels[("train/3", n)]))
    t = D.load_raw(ds, root, archives)
    err = capsys.readouterr().err
    assert "is incomplete (train/3: " in err and "repairing it" in err
    assert t["train_x"].shape == (5, 28, 28) and D.missing_files(ds, root / ds.name) == {}


def test_unwritable_data_dir(tiny):
    ds, _, archives, _ = tiny
    blocker = archives.parent / "a-file"
    blocker.write_text("a file where the data folder's parent should be")
    with pytest.raises(D.DataError) as e:
        D.load_raw(ds, blocker / "data", archives)
    assert "is not writable" in str(e.value) and "Set SGD_DATA" in str(e.value)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root can write to a read-only folder")
def test_read_only_data_dir(tiny):
    ds, root, archives, _ = tiny
    root.mkdir()
    root.chmod(0o500)
    try:
        with pytest.raises(D.DataError, match="is not writable"):
            D.load_raw(ds, root, archives)
    finally:
        root.chmod(0o700)


# ----------------------------------------------------------------------------- online / offline
def test_offline_with_nothing_cached(tiny, monkeypatch):
    ds, root, archives, _ = tiny
    (archives / ds.archive).unlink()
    monkeypatch.setattr(D, "_download", no_network)
    with pytest.raises(D.DataError) as e:
        D.load_raw(ds, root, archives)
    msg = str(e.value)
    assert "download failed (URLError" in msg
    assert "Connect to the internet" in msg and "set SGD_ARCHIVES" in msg and ds.archive in msg
    assert not (root / ds.name).exists() and not D.cache_path(ds, root).exists()


def test_online_path_goes_through_download(tiny, monkeypatch):
    ds, root, archives, _ = tiny
    archive = archives / ds.archive
    moved = archive.rename(archive.with_name("elsewhere.tgz"))
    calls = []

    def fake_untar_data(ds_, root_):
        calls.append(ds_.fastai_url)
        with tarfile.open(moved) as tf:
            tf.extractall(root_, filter="data")
        return root_ / ds_.name

    monkeypatch.setattr(D, "_download", fake_untar_data)
    (root / ds.name).mkdir(parents=True)  # an empty folder that untar_data would wrongly accept
    t = D.load_raw(ds, root, archives)
    assert calls == ["MNIST_SAMPLE"] and t["valid_x"].shape == (3, 28, 28)


def test_incomplete_download_is_removed(tiny, monkeypatch):
    ds, root, archives, _ = tiny
    (archives / ds.archive).unlink()

    def half_download(ds_, root_):
        (root_ / ds_.name / "train" / "3").mkdir(parents=True)
        return root_ / ds_.name

    monkeypatch.setattr(D, "_download", half_download)
    with pytest.raises(D.DataError, match="download of tiny_mnist is incomplete"):
        D.load_raw(ds, root, archives)
    assert not (root / ds.name).exists()


def test_locations_follow_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SGD_DATA", str(tmp_path / "d"))
    monkeypatch.setenv("SGD_ARCHIVES", str(tmp_path / "a"))
    assert D.data_dir() == tmp_path / "d" and D.archive_dir() == tmp_path / "a"
    monkeypatch.delenv("SGD_DATA")
    monkeypatch.delenv("SGD_ARCHIVES")
    project = Path(D.__file__).resolve().parent.parent
    assert D.data_dir() == project / "data"
    assert D.archive_dir() == project.parent / "shared" / "data"


# ----------------------------------------------------------------------------- the real archives
SHARED = D.archive_dir()
needs_shared = pytest.mark.skipif(
    not (SHARED / "mnist_sample.tgz").exists() and not D.cache_path(D.MNIST_SAMPLE).exists(),
    reason="neither the offline archives nor a provisioned cache are here",
)


@pytest.mark.skipif(not (SHARED / "mnist_sample.tgz").exists(), reason="no offline archives here")
@pytest.mark.parametrize("ds", list(D.DATASETS.values()), ids=list(D.DATASETS))
def test_shared_archive_checksum(ds):
    assert D.sha256_of(SHARED / ds.archive) == ds.sha256


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
    assert m["x_train"].shape == (50_000, 784) and m["x_valid"].shape == (10_000, 784)
    assert m["x_test"].shape == (10_000, 784) and m["y_test"].dtype == torch.int64
    assert m["y_train"].min() == 0 and m["y_train"].max() == 9
    raw = D.load_raw(D.MNIST)
    assert raw["training_idx"].tolist() == list(range(60_000))  # the original MNIST order
    assert raw["testing_idx"].tolist() == list(range(10_000))
    # The well-known first labels of MNIST's training and test files.
    assert m["y_train"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert m["y_valid"][:3].tolist() == raw["training_y"][50_000:50_003].tolist()
    assert m["y_test"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    folder = D.data_dir() / "mnist_png"
    if folder.is_dir():  # spot-check the cache against the PNGs themselves
        for i in (0, 12_345, 59_999):
            label = int(raw["training_y"][i])
            png = np.asarray(Image.open(folder / "training" / str(label) / f"{i}.png"))
            assert np.array_equal(png, raw["training_x"][i].numpy())


@needs_shared
def test_sample_is_a_subset_of_full_mnist():
    s, m = D.load_raw(D.MNIST_SAMPLE), D.load_raw(D.MNIST)
    i = s["train_idx"][:50]
    assert torch.equal(s["train_x"][:50], m["training_x"][i])
    j = s["valid_idx"][:50]
    assert torch.equal(s["valid_x"][:50], m["testing_x"][j])
