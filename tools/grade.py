"""Grade a folder of returned student notebooks with the exercises' checks: one table, learner x exercise.

    python -m tools.grade SUBMISSIONS [--out build/grades] [--timeout 600] [--jobs 2] [--lesson NN]
    python -m tools.grade --list          # every check, its lesson and exercise, the names it reads
    make grade SUBMISSIONS=folder          # the same, after the data is provisioned

Every `*.ipynb` under SUBMISSIONS is one submission; the learner is its path there without the
suffix (`alice.ipynb` -> alice, `alice/03_lesson.ipynb` -> alice/03_lesson). Its
lesson is `--lesson`, else the two digits its file name starts with, else those of the check cells
it holds. Each submission runs top to bottom, errors and all, in its own process:

- on a copy, in a fresh temporary folder that is also its HOME, TMPDIR and working folder,
  deleted afterwards; the originals are never opened for writing;
- with a time limit on the whole run (`--timeout`), after which its process group is killed;
- in an empty network namespace (`unshare --user --net`) where the system allows it, and in any
  case with the proxy variables pointing at a closed port and a guard in the kernel
  (tools/sandbox/sitecustomize.py) that refuses internet sockets, host look-ups, other programs
  (but graphviz's `dot`), and writing or deleting files outside that folder;
- with limits on the size of a file it writes (1 GiB) and on open files.

Then the checks run once more in the same kernel, after the learner's last cell, and their
verdicts make the row; a notebook that crashed, looped or was refused something says so in the
`status` column. The guard is not a security boundary (ctypes goes around it), and a learner who
owns the kernel can fake a verdict: for untrusted submissions, run the grader as a user who can
write nothing else, or in a container. Written: OUT/grades.csv, OUT/grades.md and each executed
copy in OUT/executed/.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = Path(__file__).resolve().parent / "sandbox"
RESULT = "SGD-GRADE-RESULT "
CLOSED_PORT = "http://127.0.0.1:9"  # the discard port: nothing listens there
VERDICT = {True: "passed", False: "not yet"}


# ----------------------------------------------------------------------------------- what to grade
def lesson_checks(lesson: str) -> list[str]:
    """The check keys of a lesson's exercises, in order, from tools/exercises.toml."""
    from tools.classroom import exercise_table

    rows = sorted((x for x in exercise_table()[0] if x.lesson == lesson), key=lambda x: x.number)
    return [x.check for x in rows]


def lesson_of(path: Path, forced: str | None) -> str | None:
    if forced:
        return forced
    if m := re.match(r"(\d\d)_", path.name):
        return m.group(1)
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        source = "\n".join("".join(c.get("source", "")) for c in nb.get("cells", []))
    except (OSError, ValueError, AttributeError):
        return None
    from tools.classroom import exercise_table

    found = set(re.findall(r'helpers\.check\("(\w+)"\)', source))
    lessons = {x.lesson for x in exercise_table()[0] if x.check in found}
    return lessons.pop() if len(lessons) == 1 else None


@dataclass
class Row:
    learner: str
    lesson: str
    status: str
    verdicts: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


# ------------------------------------------------------------------------------ one submission
def _network_cut() -> list[str]:
    """`unshare` arguments for an empty network namespace, if this system lets an ordinary user make one."""
    unshare = shutil.which("unshare")
    if not unshare:
        return []
    try:
        ok = subprocess.run([unshare, "--user", "--map-root-user", "--net", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [unshare, "--user", "--map-root-user", "--net"] if ok.returncode == 0 else []


def _limits() -> None:  # in the child, before it runs anything
    os.setsid()
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def sandbox_env(work: Path) -> dict[str, str]:
    """A clean environment for the submission: its folder as HOME and TMPDIR, no proxy that works."""
    keep = ("PATH", "LANG", "LC_ALL", "SGD_DATA", "SGD_ARCHIVES", "OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.setdefault("SGD_DATA", str(_data_dir()))
    proxies = {k: CLOSED_PORT for k in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY")}
    env.update(proxies)
    env.update(
        HOME=str(work),
        TMPDIR=str(work / "tmp"),
        PYTHONPATH=os.pathsep.join([str(SANDBOX), str(ROOT)]),
        PYTHONDONTWRITEBYTECODE="1",
        SGD_GRADE_WRITABLE=str(work),
        SGD_GRADE_PROGRAMS="dot",  # graphviz draws lesson 00's diagram
        SGD_DEVICE="cpu",
        MPLBACKEND="Agg",
        no_proxy="",
        NO_PROXY="",
        PIP_NO_INDEX="1",
    )
    return env


def _data_dir() -> Path:
    from helpers.storage import data_dir

    return data_dir().resolve()


def grade_one(path: Path, learner: str, lesson: str | None, timeout: float, out: Path, net: list[str]) -> Row:
    """Run one submission in its own process and sandbox; its row of the table."""
    start = time.perf_counter()
    if lesson is None:
        return Row(learner, "?", "no lesson: name the file NN_... or pass --lesson NN")
    keys = lesson_checks(lesson)
    if not keys:
        return Row(learner, lesson, f"lesson {lesson} has no checks")
    with tempfile.TemporaryDirectory(prefix="sgd-grade-") as tmp:
        work = Path(tmp) / "work"
        (work / "tmp").mkdir(parents=True)
        shutil.copyfile(path, work / "submission.ipynb")
        cmd = [*net, sys.executable, "-m", "tools.grade", "--run-one", str(work / "submission.ipynb"),
               "--checks", ",".join(keys), "--timeout", str(timeout)]  # fmt: skip
        proc = subprocess.Popen(
            cmd,
            cwd=work,
            env=sandbox_env(work),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_limits,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            row = Row(learner, lesson, f"timed out after {timeout:g} s", {k: "not graded" for k in keys})
            row.seconds = time.perf_counter() - start
            return row
        finally:
            try:  # whatever the kernel left running in the group
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        executed = work / "executed.ipynb"
        if executed.is_file():
            target = out / "executed" / f"{learner}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(executed, target)
    lines = [line for line in stdout.decode(errors="replace").splitlines() if line.startswith(RESULT)]
    if not lines:
        last = (stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        row = Row(learner, lesson, f"crashed: {last[:200]}", {k: "not graded" for k in keys})
    else:
        result = json.loads(lines[-1][len(RESULT) :])
        row = Row(learner, lesson, result["status"])
        for key in keys:
            got = result["checks"].get(key)
            row.verdicts[key] = VERDICT[got["passed"]] if got else "not graded"
            row.messages[key] = got["message"] if got else ""
    row.seconds = time.perf_counter() - start
    return row


# ------------------------------------------------------------------- inside the sandboxed process
GRADE_CELL = """\
import json as _json
from helpers.checks import run as _run
print({marker!r} + _json.dumps({{k: _run(k, globals()).__dict__ for k in {keys!r}}}))"""


def run_one(path: Path, keys: list[str], timeout: float) -> int:
    """Execute the notebook at `path` (errors and all), then the checks; print the result line."""
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    status, checks = "ran", {}
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        print(RESULT + json.dumps({"status": f"not a notebook: {type(e).__name__}", "checks": {}}))
        return 0
    nb.cells.append(nbformat.v4.new_code_cell(GRADE_CELL.format(marker=RESULT, keys=keys)))
    km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(path.parent / "kernel"))
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except DeadKernelError:
        status = "the kernel died (crashed) before the checks ran"
    except Exception as e:
        status = f"stopped: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:200]
    for output in nb.cells[-1].get("outputs", []):
        text = output.get("text", "")
        for line in text.splitlines():
            if line.startswith(RESULT):
                checks = json.loads(line[len(RESULT) :])
    errors = sum(  # cells the lesson means to raise (tagged for nbval) do not count
        any(o.get("output_type") == "error" for o in c.get("outputs", []))
        and "raises-exception" not in c.get("metadata", {}).get("tags", [])
        for c in nb.cells[:-1]
    )
    if status == "ran" and errors:
        status = f"ran, {errors} cell{'s' * (errors > 1)} raised an error"
    if status == "ran" and not checks:
        status = "ran, but the checks printed nothing"
    nb.cells.pop()
    try:
        nbformat.write(nb, path.parent / "executed.ipynb")
    except Exception:
        pass
    print(RESULT + json.dumps({"status": status, "checks": checks}), flush=True)
    return 0


# ------------------------------------------------------------------------------------ the table
def write_tables(rows: list[Row], out: Path) -> tuple[Path, Path]:
    keys = list(dict.fromkeys(k for r in rows for k in r.verdicts))
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / "grades.csv", out / "grades.md"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["learner", "lesson", *keys, "passed", "status", "seconds"])
        for r in rows:
            passed = sum(v == "passed" for v in r.verdicts.values())
            w.writerow(
                [r.learner, r.lesson, *(r.verdicts.get(k, "") for k in keys), passed, r.status, f"{r.seconds:.1f}"]
            )
    lines = [
        "| learner | lesson | " + " | ".join(f"`{k}`" for k in keys) + " | passed | status |",
        "| --- | --- | " + " | ".join("---" for _ in keys) + " | --- | --- |",
    ]
    mark = {"passed": "✅", "not yet": "❌", "not graded": "—", "": ""}
    for r in rows:
        cells = [mark.get(r.verdicts.get(k, ""), r.verdicts.get(k, "")) for k in keys]
        passed = sum(v == "passed" for v in r.verdicts.values())
        lines.append(
            f"| {r.learner} | {r.lesson} | " + " | ".join(cells) + f" | {passed}/{len(r.verdicts)} | {r.status} |"
        )
    hints = [
        f"- {r.learner}, `{k}`: {m}" for r in rows for k, m in r.messages.items() if r.verdicts.get(k) == "not yet"
    ]
    text = "\n".join(lines) + "\n"
    if hints:
        text += "\nWhat the checks said:\n\n" + "\n".join(hints) + "\n"
    md_path.write_text(text, encoding="utf-8")
    return csv_path, md_path


def grade(folder: Path, out: Path, timeout: float, jobs: int, lesson: str | None) -> list[Row]:
    if not folder.is_dir():
        raise SystemExit(f"{folder} is not a folder: give the folder of returned notebooks")
    paths = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not paths:
        raise SystemExit(f"{folder} holds no .ipynb file")
    net = _network_cut()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [
            pool.submit(
                grade_one, p, str(p.relative_to(folder).with_suffix("")), lesson_of(p, lesson), timeout, out, net
            )
            for p in paths
        ]
        rows = [f.result() for f in futures]
    write_tables(rows, out)
    return rows


def list_checks() -> str:
    from helpers.checks import names_of
    from tools.classroom import exercise_table

    rows, pending = exercise_table()
    out = ["lesson  exercise  check                      names the learner defines"]
    for x in rows:
        note = "  (planned)" if x.planned else ""
        out.append(f"{x.lesson}      {x.number:<8}  {x.check:<26} {', '.join(names_of(x.check))}{note}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submissions", nargs="?", type=Path, help="folder of returned notebooks")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "grades", help="where the tables go")
    p.add_argument("--timeout", type=float, default=600, help="seconds one notebook may run (default 600)")
    p.add_argument("--jobs", type=int, default=2, help="notebooks graded at once (default 2)")
    p.add_argument("--lesson", help="the lesson of every submission (default: from each file name)")
    p.add_argument("--list", action="store_true", help="list the checks and the names they read")
    p.add_argument("--run-one", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--checks", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_one:
        return run_one(args.run_one, args.checks.split(","), args.timeout)
    if args.list:
        print(list_checks())
        return 0
    if args.submissions is None:
        p.error("give the folder of submissions (or --list)")
    start = time.perf_counter()
    rows = grade(args.submissions, args.out, args.timeout, args.jobs, args.lesson)
    print((args.out / "grades.md").read_text(encoding="utf-8"))
    print(f"{len(rows)} notebooks graded in {time.perf_counter() - start:.0f} s: {args.out / 'grades.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
