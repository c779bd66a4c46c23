"""What the hub tests share: a hub started for a test and always stopped, and lessons run cell by cell
through a learner's kernel with each output compared to the stored one as nbval compares it."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import coalesce_streams, get_sanitize_patterns, transform_streams_for_comparison
from nbval_tolerance import tolerance_of, within

from tools import hub as H
from tools.hub_client import Kernel

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = [(re.compile(r), rep) for r, rep in get_sanitize_patterns((ROOT / "tests" / "sanitize.cfg").read_text())]
# what nbval leaves out of the comparison (its defaults, without nbdime: images are not compared)
SKIP_COMPARE = {
    "metadata",
    "traceback",
    "prompt_number",
    "output_type",
    "name",
    "execution_count",
    "application/vnd.jupyter.widget-view+json",
    "image/png",
    "image/jpeg",
}


def need_proxy() -> None:
    if not H.PROXY.exists():
        pytest.fail(f"the hub's proxy is not installed ({H.PROXY}): run `make proxy` (make test does)")


ARTIFACTS = Path(os.environ.get("SGD_ARTIFACTS", ROOT / "artifacts"))


def keep_logs(state: Path, name: str) -> None:
    """Copy the hub's and the proxy's logs (the learners' servers log into the hub's) to artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for log in ("hub.log", "proxy.log"):
        if (Path(state) / log).exists():
            shutil.copyfile(Path(state) / log, ARTIFACTS / f"{name}-{log}")


@contextlib.contextmanager
def running_hub(state: Path, name: str, **kw):
    """A hub in ``state`` for the length of the block; stopped after it, with nothing of it left running."""
    need_proxy()
    try:
        yield H.start(state, **kw)
    finally:
        H.stop(state)
        keep_logs(state, name)
        assert H.hub_processes(state) == [], "processes of the hub were left running"


def sanitize(value):
    if not isinstance(value, str):
        return value
    for rx, rep in SANITIZE:
        value = rx.sub(rep, value)
    return value


def _flatten(outputs: list[dict]) -> dict[str, list]:
    """nbval's view of a cell's outputs: streams merged by name, every other key (and MIME type) listed in order."""
    nodes = transform_streams_for_comparison(coalesce_streams([nbformat.from_dict(o) for o in outputs]))
    flat: dict[str, list] = defaultdict(list)
    for out in nodes:
        for key, value in out.items():
            if key in SKIP_COMPARE:
                continue
            if key == "data":
                for mime, v in value.items():
                    if mime not in SKIP_COMPARE:
                        flat[mime].append(sanitize(v))
            else:
                flat[key].append(sanitize(value))
    return flat


def differences(got: list[dict], stored: list[dict], metadata: dict) -> str | None:
    """Why ``got`` does not read as the stored outputs (nbval's rules, numbers within the cell's tolerance), or None."""
    tol = tolerance_of(metadata)
    g, s = _flatten(got), _flatten(stored)
    if set(g) != set(s):
        return f"output keys {sorted(g)} where the notebook stores {sorted(s)}: {str(dict(g))[:600]}"
    for key in s:
        if len(g[key]) != len(s[key]):
            return f"{len(g[key])} outputs of {key} where the notebook stores {len(s[key])}"
        for a, b in zip(g[key], s[key]):
            if a != b and not (isinstance(a, str) and isinstance(b, str) and within(a, b, tol)):
                return f"{key}: got {str(a)[:300]!r}, stored {str(b)[:300]!r}"
    return None


def run_cell(kernel: Kernel, cell) -> str | None:
    """Run one stored code cell as nbval does; what went wrong, or None."""
    tags = cell.metadata.get("tags", [])
    outputs, reply = kernel.execute(cell.source)
    failed = reply.get("status") == "error"
    if "raises-exception" in tags:
        if not failed:
            return "was expected to raise an exception and did not"
    elif failed:
        return f"raised {reply.get('ename')}: {reply.get('evalue')}"
    if "nbval-ignore-output" in tags:
        return None
    return differences(outputs, cell.outputs, cell.metadata)


def code_cells(path: Path) -> list:
    """The lesson's code cells that nbval runs (all but those tagged nbval-skip)."""
    nb = nbformat.read(path, as_version=4)
    return [c for c in nb.cells if c.cell_type == "code" and "nbval-skip" not in c.metadata.get("tags", [])]


def fingerprint(root: Path) -> dict[str, tuple]:
    """Every file and folder under ``root``: mode, size, inode, modification and change times, and for the
    tensor caches (what every kernel reads) their sha256. Any write, rename, chmod or new file changes this:
    a file's change time moves with every change to it and no one can set it back."""
    out = {}

    def walk(folder: str, rel: str) -> None:
        st = os.lstat(folder)
        out[rel or "."] = (st.st_mode, 0, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, "")
        with os.scandir(folder) as entries:
            for e in entries:
                name = f"{rel}/{e.name}" if rel else e.name
                if e.is_dir(follow_symlinks=False):
                    walk(e.path, name)
                    continue
                st = e.stat(follow_symlinks=False)
                digest = hashlib.sha256(Path(e.path).read_bytes()).hexdigest() if e.name.endswith(".pt") else ""
                out[name] = (st.st_mode, st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns, digest)

    walk(str(root), "")
    return out


def learner_processes(state: Path, name: str) -> list[int]:
    """The processes of one learner's server (the server and its kernels)."""
    mine = f"JUPYTERHUB_USER={name}".encode()
    found = []
    for pid in H.hub_processes(state):
        try:
            if mine in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
        except OSError:
            pass
    return found


def peak_rss_mib(pid: int) -> float:
    """The most memory ``pid`` has held (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        time.sleep(0.2)
