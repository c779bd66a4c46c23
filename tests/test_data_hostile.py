"""Hostile archives whose checksum is pinned, as a maintainer would pin a new archive: nothing is written
outside the extraction folder, nothing is left in the data folder, and the error names the archive and its
first bad member.

Each hostile archive is a complete tiny dataset with bad members in the middle, so that extracting it
without checking its members would succeed and go unnoticed.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_data import TINY_COUNTS, TINY_INDEX, _png, sha, tiny_dataset

import helpers
from helpers import data as D
from helpers import storage as S


class Entry(tarfile.TarInfo):
    """A member to write into a test archive, with its contents."""

    payload: bytes = b""


def file(name: str, payload: bytes = b"written by a hostile archive\n", mode: int = 0o644) -> Entry:
    info = Entry(name)
    info.size, info.mode, info.payload = len(payload), mode, payload
    return info


def folder(name: str, mode: int = 0o755) -> Entry:
    info = Entry(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info


def link(name: str, target: str, hard: bool = False) -> Entry:
    info = Entry(name)
    info.type, info.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), target
    return info


def special(name: str, kind: bytes) -> Entry:
    info = Entry(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3  # 1:3 is /dev/null
    return info


def good_members(name: str, file_mode: int = 0o644, dir_mode: int = 0o755) -> list[Entry]:
    """A complete tiny dataset named ``name``: its folders and images."""
    rng = np.random.default_rng(0)
    out = [folder(name, dir_mode)]
    for f, idxs in TINY_INDEX.items():
        out.append(folder(f"{name}/{f}", dir_mode))
        out += [
            file(f"{name}/{f}/{n}.png", _png(rng.integers(0, 256, (28, 28), dtype=np.uint8)), file_mode) for n in idxs
        ]
    return out


def build(path: Path, members: list[Entry]) -> Path:
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tf:
        for m in members:
            tf.addfile(m, io.BytesIO(m.payload) if m.isreg() else None)
    return path


def snapshot(top: Path, *skip: Path) -> dict[str, tuple]:
    """Everything under ``top`` but the folders ``skip``: type, mode, mtime and contents (links not followed)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [n for n in dirnames if Path(dirpath) / n not in skip]
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            if p.is_symlink():
                what = os.readlink(p)
            elif p.is_file():
                what = p.read_bytes()
            else:
                what = None
            out[str(p.relative_to(top))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_mtime_ns, what)
    return out


def everything_in(root: Path) -> list[str]:
    """Every name under ``root``, hidden ones and links included (links not followed)."""
    return sorted(str((Path(d) / n).relative_to(root)) for d, ds, fs in os.walk(root) for n in ds + fs)


# The data folder is tmp_path/data; extraction happens in tmp_path/data/.<name>.partial-*, then the folder is
# renamed to tmp_path/data/<name>. From a member's folder <name>/train/3, tmp_path is five levels up while the
# archive is extracted (what a member written then climbs) and four once in place (what a link left there climbs).
DURING, IN_PLACE = "../../../../..", "../../../.."


def hostile(n: str, outside: Path) -> dict[str, tuple[list[Entry], str, str]]:
    """Each case: bad members for a dataset named ``n``, the name of the first one to be refused, and why."""
    three, secret = f"{n}/train/3", f"{outside}/secret.txt"
    cases = {
        "dotdot": ([file(f"{three}/{DURING}/outside/dotdot.txt")], "a name with '..'"),
        "dotdot into the data folder": ([file("../dotdot.txt")], "a name with '..'"),
        "absolute": ([file(f"{outside}/absolute.txt")], "an absolute name"),
        "windows dotdot": ([file(f"{n}\\..\\..\\..\\win.txt")], "a name with '..'"),
        "windows drive": ([file("C:/Windows/drive.txt")], "a name with ':'"),
        "symlink out": ([link(f"{three}/secret", f"{IN_PLACE}/outside/secret.txt")], "a symbolic link to"),
        "absolute symlink": ([link(f"{three}/secret", secret)], "a symbolic link to"),
        "hard link out": ([link(f"{three}/secret", "../../outside/secret.txt", hard=True)], "a hard link to"),
        "absolute hard link": ([link(f"{three}/secret", secret, hard=True)], "a hard link to"),
        "symlink then a file through it": (
            [link(f"{three}/out", f"{DURING}/outside"), file(f"{three}/out/through.txt")],
            "a symbolic link to",
        ),
        "absolute symlink then a file through it": (
            [link(f"{n}/out", str(outside)), file(f"{n}/out/through.txt")],
            "a symbolic link to",
        ),
        # The link points inside, but a file written through a link is refused all the same.
        "inner symlink then a file through it": (
            [link(f"{n}/train/in", "7"), file(f"{n}/train/in/through.png")],
            f"written through the link '{n}/train/in'",
        ),
        # Extracting the folder would set the times of what the link points to.
        "folder over a symlink": (
            [link(f"{n}/train/in", "7"), folder(f"{n}/train/in")],
            f"written over the link '{n}/train/in'",
        ),
        # Each alone resolves inside by its parts; with l -> .., s points two levels above the data folder.
        "symlink through a later symlink": (
            [link(f"{n}/train/s", "l/../../.."), link(f"{n}/train/l", "..")],
            f"a symbolic link to 'l/../../..', through the link '{n}/train/l'",
        ),
        # tarfile would copy the symbolic link to the hard link's place, where ../.. leads out.
        "hard link to a symlink": (
            [link(f"{three}/s", "../.."), link(f"{n}/h", f"{three}/s", hard=True)],
            f"a hard link to '{three}/s', through the link '{three}/s'",
        ),
        "hard link to nothing": (
            [link(f"{n}/h", f"{n}/nowhere.png", hard=True)],
            f"a hard link to '{n}/nowhere.png', which is not an earlier file of the archive",
        ),
        "character device": ([special(f"{n}/null", tarfile.CHRTYPE)], "a character device, not a file"),
        "block device": ([special(f"{n}/disk", tarfile.BLKTYPE)], "a block device, not a file"),
        "fifo": ([special(f"{n}/pipe", tarfile.FIFOTYPE)], "a FIFO, not a file"),
    }
    first = {"inner symlink then a file through it": 1, "folder over a symlink": 1, "hard link to a symlink": 1}
    return {case: (bad, bad[first.get(case, 0)].name, why) for case, (bad, why) in cases.items()}


CASES = list(hostile("n", Path("/o")))


@pytest.fixture
def place(tmp_path):
    """A tiny dataset and, beside its data folder, a folder ``outside`` holding a secret file."""
    ds, root, archives, _ = tiny_dataset(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("not the archive's to touch\n")
    return ds, root, archives, outside


def build_hostile(path: Path, name: str, outside: Path, case: str) -> tuple[str, str]:
    """Write the case's archive (a complete dataset ``name``, bad members after train/3's images) to ``path``;
    return the name of its first bad member and why it is bad."""
    bad, first, why = hostile(name, outside)[case]
    members = good_members(name)
    k = 2 + len(TINY_INDEX["train/3"])
    build(path, members[:k] + bad + members[k:])
    return first, why


def pin_hostile(ds: S.Dataset, archives: Path, outside: Path, case: str) -> tuple[S.Dataset, str, str]:
    """Write the case's archive over ``ds``'s and pin its checksum."""
    first, why = build_hostile(archives / ds.archive, ds.name, outside, case)
    return replace(ds, sha256=sha(archives / ds.archive)), first, why


@pytest.mark.parametrize("case", CASES)
def test_hostile_archive_is_refused(place, monkeypatch, case):
    ds, root, archives, outside = place
    ds, first, why = pin_hostile(ds, archives, outside, case)
    monkeypatch.setitem(S.DATASETS, ds.name, ds)  # registered, as a maintainer adds a dataset
    before = snapshot(root.parent, root)
    with pytest.raises(D.DataError) as e:
        S.load_raw(ds.name, root, archives)
    msg = str(e.value)
    assert f"The archive {archives / ds.archive} holds a member that could be written outside" in msg
    assert f"extracted into: {first!r} is {why}" in msg
    assert "Nothing was extracted" in msg and "pin is of an unsafe archive" in msg
    assert snapshot(root.parent, root) == before, "something outside the data folder changed"
    assert everything_in(root) == [f".{ds.name}.lock"], "no partial folder, no link, no cache"


@pytest.mark.parametrize("case", ["dotdot", "symlink out", "hard link out", "symlink then a file through it"])
def test_lesson_call_refuses_a_pinned_hostile_archive(place, monkeypatch, case):
    """What lesson 00 calls, with its archive and pin replaced by a hostile archive's, writes nothing anywhere."""
    _, root, archives, outside = place
    sample = replace(S.MNIST_SAMPLE, counts=dict(TINY_COUNTS), crc32=None)
    sample, first, why = pin_hostile(sample, archives, outside, case)
    monkeypatch.setattr(D, "MNIST_SAMPLE", sample)
    monkeypatch.setitem(S.DATASETS, sample.name, sample)
    monkeypatch.setenv("SGD_DATA", str(root))
    monkeypatch.setenv("SGD_ARCHIVES", str(archives))
    before = snapshot(root.parent, root)
    with pytest.raises(D.DataError) as e:
        helpers.load_3s_and_7s()
    assert f"The archive {archives / sample.archive} holds a member" in str(e.value)
    assert f"{first!r} is {why}" in str(e.value)
    assert snapshot(root.parent, root) == before
    assert everything_in(root) == [".mnist_sample.lock"]
    build(archives / sample.archive, good_members(sample.name))  # a harmless archive, pinned: the lesson goes on
    monkeypatch.setattr(D, "MNIST_SAMPLE", replace(sample, sha256=sha(archives / sample.archive)))
    assert helpers.load_3s_and_7s()["train_3"].shape == (3, 28, 28)


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink out", "hard link out", "fifo"])
def test_hostile_download_is_refused_and_deleted(place, monkeypatch, case):
    """The online path: an archive that passed fastai's own size and hash check is checked all the same."""
    ds, root, archives, outside = place
    (archives / ds.archive).unlink()
    fetched = archives / "fastai-archive" / "mnist_sample.tgz"  # where fastai's download would have put it
    fetched.parent.mkdir()
    first, why = build_hostile(fetched, ds.name, outside, case)
    monkeypatch.setattr(S, "_download", lambda ds_: fetched)
    before = snapshot(root.parent, root, fetched.parent)
    with pytest.raises(D.DataError) as e:
        S.load_raw(ds, root, archives)
    msg = str(e.value)
    assert f"The archive {fetched} holds a member" in msg and f"{first!r} is {why}" in msg
    assert "fastai's archive for URLs.MNIST_SAMPLE" in msg and "it was deleted" in msg
    assert not fetched.exists(), "deleted, so that the next run downloads it again"
    assert snapshot(root.parent, root, fetched.parent) == before
    assert everything_in(root) == [f".{ds.name}.lock"]


def test_links_inside_are_extracted(place):
    """Links that resolve inside, through no other link, are a harmless archive's right."""
    ds, root, archives, _ = place
    members = good_members(ds.name)
    extra = [
        file("tiny_mnist/labels.csv", b"name,label\n"),
        link("tiny_mnist/train/three", "3"),
        link("tiny_mnist/valid/7/labels.csv", "../../labels.csv"),
        link("tiny_mnist/copy.csv", "tiny_mnist/labels.csv", hard=True),
    ]
    build(archives / ds.archive, members + extra)
    ds = replace(ds, sha256=sha(archives / ds.archive))
    assert S.load_raw(ds, root, archives)["train_x"].shape == (5, 28, 28)
    got = root / ds.name
    assert (got / "train" / "three").is_symlink() and (got / "train" / "three" / "10.png").is_file()
    assert (got / "valid" / "7" / "labels.csv").read_text() == "name,label\n"
    assert (got / "copy.csv").stat().st_ino == (got / "labels.csv").stat().st_ino


def test_modes_and_owners_of_the_archive_are_not_trusted(place):
    """Set-id bits, world-writable files, folders nobody may enter, another owner: none is kept, as with
    tarfile's data filter (a folder of mode 000 would also leave a partial folder nobody could delete)."""
    ds, root, archives, _ = place
    members = good_members(ds.name, file_mode=0o6777, dir_mode=0o000)
    for m in members:
        m.uid, m.gid, m.uname, m.gname = 12345, 12345, "", ""
    build(archives / ds.archive, members)
    ds = replace(ds, sha256=sha(archives / ds.archive))
    assert S.load_raw(ds, root, archives)["valid_x"].shape == (3, 28, 28)
    png = root / ds.name / "train" / "3" / "10.png"
    assert stat.S_IMODE(png.stat().st_mode) == 0o755 and png.stat().st_uid == os.getuid()
    assert png.parent.stat().st_mode & 0o700 == 0o700, "folders get the default mode, not the archive's"
    assert everything_in(root).count(f".{ds.name}.lock") == 1 and S.temporaries(ds, root) == []


def test_first_unsafe_on_member_lists():
    members = [
        folder("d"),
        file("d/ok.png"),
        special("d/pipe", tarfile.FIFOTYPE),
        file("../late.txt"),
    ]
    m, why = S._first_unsafe(members)
    assert m.name == "d/pipe" and why.startswith("a FIFO")
    assert S._first_unsafe(members[:2]) is None
    assert S._first_unsafe([folder("."), folder("./d/"), file("./d/x")]) is None
    assert S._first_unsafe([file(".")])[1] == "a name that is the extraction folder itself"
    assert S._first_unsafe([file("x"), link("x", "y")]) is None, (
        "a link may replace a file: nothing is written through it"
    )
    assert "written over the link" in S._first_unsafe([link("x", "y"), link("x", "z", hard=True)])[1]
