"""A provisioning process killed at any point; the next run repairs everything and leaves nothing behind.

``SGD_DATA_PAUSE=extract|decode|cache`` (helpers/storage.py) makes a process stop half-way through
extracting, half-way through decoding, or with its cache written but not renamed into place; the
test waits for it to say so, kills it with SIGKILL, then runs again.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from test_data import PROJECT, Worker, leftovers, stop, tiny_dataset
from test_data_concurrent import ARCHIVES, needs_archives, scratch  # noqa: F401 (a fixture)

import helpers.__main__ as command
from helpers import storage as S


@pytest.mark.parametrize("point", ["extract", "decode", "cache"])
def test_killed_then_rerun_repairs(tmp_path, point):
    ds, root, archives, pixels = tiny_dataset(tmp_path)
    w = Worker({"datasets": [ds], "root": root, "archives": archives}, {"SGD_DATA_PAUSE": point})
    try:
        w.wait_for(f"paused at {point}")
        left = [str(t.relative_to(root)) for t in S.temporaries(ds, root)]
        if point == "extract":  # half the archive is out, in a hidden folder; the dataset's name is still free
            assert len(left) == 1 and left[0].startswith(f".{ds.name}.partial-") and not (root / ds.name).exists()
        elif point == "decode":  # nothing is written while decoding
            assert left == [] and S.missing_files(ds, root / ds.name) == {}
        else:  # the whole cache is in a temporary file, not yet renamed
            assert len(left) == 1 and left[0].startswith(f"cache/.{ds.name}.pt.") and left[0].endswith(".tmp")
        assert not S.cache_path(ds, root).exists()
        w.kill()
    finally:
        stop([w])
    t = S.load_raw(ds, root, archives)  # the next run
    assert S.missing_files(ds, root / ds.name) == {} and S.temporaries(ds, root) == []
    assert leftovers(root, ds.name) == []
    assert S._read_cache(ds, S.cache_path(ds, root), say=False) is not None
    assert np.array_equal(t["train_x"][2].numpy(), pixels[("train/3", 10)])


def test_killed_holder_of_the_lock_lets_the_waiter_finish(tmp_path):
    """A process killed while another waits for it: the kernel frees the lock and the next in line does the work."""
    ds, root, archives, _ = tiny_dataset(tmp_path)
    spec = {"datasets": [ds], "root": root, "archives": archives}
    holder = Worker(spec, {"SGD_DATA_PAUSE": "decode"})
    workers = [holder]
    try:
        holder.wait_for("paused at decode")
        waiter = Worker(spec)
        workers.append(waiter)
        waiter.wait_for("waiting for another process that is preparing tiny_mnist")
        holder.kill()
        assert waiter.finish()["tiny_mnist"] == S.tensors_crc32(ds, S.load_raw(ds, root, archives))
    finally:
        stop(workers)
    said = "\n".join(waiter.log)
    assert said.count("waiting for another process") == 1 and "decoding 8 images" in said
    assert S.temporaries(ds, root) == [] and S._read_cache(ds, S.cache_path(ds, root), say=False) is not None


def wait_for_line(p: subprocess.Popen, text: str, timeout: float = 300) -> str:
    """Read a command's stderr until a line holds ``text``; what it said so far."""
    lines: list[str] = []

    def read() -> None:
        for line in p.stderr:
            lines.append(line)
            if text in line:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert any(text in line for line in lines), f"no {text!r} within {timeout} s; stderr so far:\n{''.join(lines)}"
    return "".join(lines)


@needs_archives
def test_provision_command_killed_mid_cache_write_then_rerun(scratch):  # noqa: F811 (the fixture)
    """The real 3-vs-7 sample through the command line: it says what it does, on stderr; a rerun repairs."""
    root = scratch / "data"
    env = {**os.environ, "SGD_DATA": str(root), "SGD_ARCHIVES": str(ARCHIVES), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "helpers", "provision", "mnist_sample"]
    first = subprocess.Popen(
        cmd, cwd=PROJECT, env={**env, "SGD_DATA_PAUSE": "cache"}, stderr=subprocess.PIPE, text=True
    )
    try:
        said = wait_for_line(first, "paused at cache")
    finally:
        first.kill()
        first.communicate()
    assert f"[helpers.data] extracting {ARCHIVES / 'mnist_sample.tgz'} into {root / 'mnist_sample'}\n" in said
    assert "[helpers.data] decoding 14434 images of" in said
    assert [t.parent.name for t in S.temporaries(S.MNIST_SAMPLE, root)] == ["cache"]
    again = subprocess.run(cmd, cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
    lines = again.stderr.splitlines()
    assert "left by an unfinished run" in lines[0] and "extracting" not in again.stderr
    assert lines[-1].startswith(
        f"[helpers.data] mnist_sample: 14434 images ready in {root / 'cache' / 'mnist_sample.pt'}"
    )
    assert S.temporaries(S.MNIST_SAMPLE, root) == [] and leftovers(root, "mnist_sample") == []
    assert S._read_cache(S.MNIST_SAMPLE, S.cache_path(S.MNIST_SAMPLE, root), say=False) is not None


def test_provision_command_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SGD_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SGD_ARCHIVES", str(tmp_path))
    assert command.main(["provision", "mnist"]) == 2
    assert capsys.readouterr().err == "usage: python -m helpers provision [mnist_sample] [mnist_png]\n"
    (tmp_path / "mnist_sample.tgz").write_bytes(b"not the archive")
    assert command.main(["provision", "mnist_sample"]) == 1
    assert capsys.readouterr().err.startswith(f"error: Checksum mismatch for {tmp_path / 'mnist_sample.tgz'}")
    assert logging.getLogger("helpers.data").handlers == [], "the command leaves the logger as it found it"
