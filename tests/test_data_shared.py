"""A class's shared data folder (``SGD_DATA_READONLY=1``, as the hub sets it): read, never written.

The instructor provisions the folder once and makes it read-only; a learner's kernel then reads the
cache without a lock, and a missing or incomplete folder is a ``DataError`` that names whom to ask
and the command they run, with nothing written anywhere (the learner's home included).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from test_data import tiny_dataset

import helpers
from helpers import storage as S


def tree(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` with its kind, size, mode and modification time (what a write would change)."""
    if not root.exists():
        return {}
    out = {".": (root.stat().st_mode, root.stat().st_mtime_ns)}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size, st.st_mode, st.st_mtime_ns)
    return out


def read_only(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)


def writable(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)


@pytest.fixture
def shared(tmp_path, monkeypatch):
    """A tiny dataset provisioned as an instructor does, then read-only; learners' settings in the environment.

    The data layer may neither lock nor probe for writing: both fail the test if called.
    """
    ds, root, archives, _ = tiny_dataset(tmp_path)
    S.provision([ds], root, archives)
    S.lock_path(ds, root).unlink(missing_ok=True)
    read_only(root)
    monkeypatch.setattr(S, "DATASETS", {ds.name: ds})
    monkeypatch.setenv("SGD_DATA", str(root))
    monkeypatch.setenv("SGD_DATA_READONLY", "1")
    monkeypatch.delenv("SGD_DATA_ADMIN", raising=False)

    def forbidden(*args, **kwargs):
        raise AssertionError("the data layer tried to lock or write in a read-only shared folder")

    monkeypatch.setattr(S, "_locked", forbidden)
    monkeypatch.setattr(S, "_writable", forbidden)
    monkeypatch.setattr(S, "_write_cache", forbidden)
    yield ds, root, archives
    writable(root)


def test_the_switch(monkeypatch):
    for value, on in [("1", True), ("yes", True), ("", False), ("0", False), ("false", False)]:
        monkeypatch.setenv("SGD_DATA_READONLY", value)
        assert S.shared_readonly() is on
    monkeypatch.delenv("SGD_DATA_READONLY")
    assert S.shared_readonly() is False


def test_a_ready_shared_folder_is_read_and_left_as_it_was(shared):
    ds, root, archives = shared
    before = tree(root)
    S.check_shared()
    t = S.load_raw(ds)
    assert t["train_x"].shape == (5, 28, 28) and t["train_x"].dtype == torch.uint8
    assert S.dataset_path(ds) == root / ds.name
    S.provision()  # what a learner may type in a terminal: a check, nothing more
    assert tree(root) == before
    assert not S.lock_path(ds, root).exists()


def _says_whom_and_what(message: str, root: Path, who: str = "your instructor") -> None:
    assert who in message, message
    assert f"`SGD_DATA={root} python -m helpers provision`" in message, message
    assert "nothing was written to your home folder" in message, message


def test_missing_shared_folder(shared, tmp_path, monkeypatch):
    ds, _, archives = shared
    absent = tmp_path / "not-mounted" / "sgd-data"
    monkeypatch.setenv("SGD_DATA", str(absent))
    for call in (S.check_shared, lambda: S.load_raw(ds), lambda: S.dataset_path(ds, archives=archives)):
        with pytest.raises(S.DataError, match="does not exist") as e:
            call()
        _says_whom_and_what(str(e.value), absent)
    assert not absent.parent.exists()  # not even the folder was made


def test_whom_to_ask_is_configurable(shared, tmp_path, monkeypatch):
    monkeypatch.setenv("SGD_DATA", str(tmp_path / "absent"))
    monkeypatch.setenv("SGD_DATA_ADMIN", "Ada Lovelace <ada@example.org>")
    with pytest.raises(S.DataError) as e:
        S.check_shared()
    _says_whom_and_what(str(e.value), tmp_path / "absent", who="ask Ada Lovelace <ada@example.org> to run")


@pytest.mark.parametrize("damage", ["no cache", "damaged cache", "cache is a folder", "images missing"])
def test_incomplete_shared_folder(shared, damage):
    ds, root, archives = shared
    writable(root)
    cp = S.cache_path(ds, root)
    if damage == "no cache":
        cp.unlink()
    elif damage == "damaged cache":
        cp.write_bytes(cp.read_bytes()[:100])
    elif damage == "cache is a folder":
        cp.unlink()
        cp.mkdir()
    else:
        next((root / ds.name / "train" / "7").glob("*.png")).unlink()
    read_only(root)
    before = tree(root)
    expect = {
        "no cache": "has no tensor cache of tiny_mnist",
        "damaged cache": "has a damaged tensor cache of tiny_mnist",
        "cache is a folder": "that is not a file",
        "images missing": r"complete tiny_mnist \(train/7: 1/2\)",
    }[damage]
    calls = [S.check_shared, lambda: S.load_raw(ds)]
    if damage == "images missing":
        calls = [S.check_shared, lambda: S.dataset_path(ds, archives=archives)]
    elif damage == "damaged cache":
        calls = [lambda: S.load_raw(ds)]  # check_shared only looks for the file; loading checks it
    for call in calls:
        with pytest.raises(S.DataError, match=expect) as e:
            call()
        _says_whom_and_what(str(e.value), root)
    assert tree(root) == before


def test_setup_says_it_in_the_first_cell_and_writes_nothing_home(shared, tmp_path, monkeypatch):
    """The lesson's first cell (``helpers.setup()``) fails with the message; the learner's home stays empty."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("FASTAI_HOME", raising=False)
    monkeypatch.setenv("SGD_DATA", str(tmp_path / "absent"))
    with pytest.raises(helpers.DataError) as e:
        helpers.setup()
    _says_whom_and_what(str(e.value), tmp_path / "absent")
    monkeypatch.setattr(S, "DATASETS", {d.name: d for d in (S.MNIST_SAMPLE, S.MNIST)})
    with pytest.raises(helpers.DataError, match="does not exist"):
        helpers.load_3s_and_7s()
    assert list(home.iterdir()) == [] and not (tmp_path / "absent").exists()


def test_setup_checks_nothing_outside_a_hub(shared, tmp_path, monkeypatch):
    monkeypatch.delenv("SGD_DATA_READONLY")
    monkeypatch.setenv("SGD_DATA", str(tmp_path / "absent"))
    assert helpers.setup().type in ("cpu", "cuda", "mps")
    assert not (tmp_path / "absent").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders: the hub's learners run as others")
def test_without_the_switch_a_read_only_folder_still_reads(shared, monkeypatch):
    """A learner whose hub forgot SGD_DATA_READONLY still reads a sound shared cache without writing."""
    ds, root, _ = shared
    monkeypatch.delenv("SGD_DATA_READONLY")
    monkeypatch.undo()  # the real _writable and _locked
    monkeypatch.setenv("SGD_DATA", str(root))
    before = tree(root)
    assert S.load_raw(ds, root)["valid_x"].shape == (3, 28, 28)
    assert tree(root) == before
