"""A class at once on one hub: N learners (``SGD_CLASS_SIZE``, 8 in CI) log in, start their servers, pull
the course, and at the same moment run lessons 00 and 01 through their servers' kernel API.

Every learner's every cell must print what the lesson stores (nbval's comparison, numbers within the
cells' tolerances). The shared data folder must be exactly what it was (every name, size, mode, inode,
modification and change time, and the caches' sha256: any write would show), with nothing extracted,
decoded or downloaded by any learner (each kernel counts the data layer's calls and records its log).
One more learner, killed with all their processes in the middle of lesson 00, must not disturb the
others. Times to the first cell, totals, CPU per lesson and memory per learner are printed and saved
in artifacts/hub-class.json (benchmarks/RESULTS.md quotes a run).
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import threading
import time
from pathlib import Path

import pytest
from hubtest import ARTIFACTS, code_cells, fingerprint, learner_processes, peak_rss_mib, run_cell, running_hub

from tools import classroom
from tools import hub as H
from tools.hub_client import HubClientError, Learner

pytestmark = pytest.mark.slow

CLASS_SIZE = int(os.environ.get("SGD_CLASS_SIZE", "8"))
LESSONS = [classroom.lesson("00"), classroom.lesson("01")]
KILL_AFTER = 4  # the victim's kernel dies after this many cells of lesson 00 (its data loaded, mid-lesson)

# Run in each kernel after the lesson's set-up cell: counts what the data layer does, without a word printed.
WATCH = """\
import logging as _logging
import helpers.storage as _storage

_sgd_calls = {"extract": 0, "decode": 0, "download": 0}


def _sgd_counted(name, f):
    def counted(*args, **kwargs):
        _sgd_calls[name] += 1
        return f(*args, **kwargs)

    return counted


_storage._extract = _sgd_counted("extract", _storage._extract)
_storage.decode = _sgd_counted("decode", _storage.decode)
_storage._download = _sgd_counted("download", _storage._download)


class _SgdLog(_logging.Handler):
    said = []

    def emit(self, record):
        self.said.append(f"{record.levelname} {record.getMessage()}")


_logging.getLogger("helpers.data").addHandler(_SgdLog())
_logging.getLogger("helpers.data").setLevel(_logging.INFO)
"""
REPORT = """\
import json as _json, resource as _resource, time as _time
print(_json.dumps({"calls": _sgd_calls, "log": _SgdLog.said, "cpu_s": _time.process_time(),
                   "kernel_peak_mib": _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_lesson(learner: Learner, path: Path, started: float, on_cell=None) -> dict:
    """Open the learner's copy of the lesson (kernel started in its folder) and run the full lesson's cells."""
    result = {"lesson": path.name, "failures": []}
    kernel = learner.open_notebook(f"{H.COURSE_FOLDER}/{path.name}")
    try:
        for i, cell in enumerate(code_cells(path)):
            problem = run_cell(kernel, cell)
            if problem:
                result["failures"].append(f"{path.name}, code cell {i}: {problem}")
            if "helpers.setup()" in cell.source and "first_cell_s" not in result:
                result["first_cell_s"] = time.monotonic() - started
                kernel.execute(WATCH)
            if on_cell:
                on_cell(i)
        outputs, _ = kernel.execute(REPORT)
        result.update(json.loads(outputs[0]["text"]))
        result["reconnects"] = kernel.reconnects  # connections lost and made again, as JupyterLab does
    finally:
        kernel.close()
    result["total_s"] = time.monotonic() - started
    return result


def test_a_class_at_once(tmp_path):
    state = tmp_path / "hub"
    before = None
    with running_hub(state, "hub-class") as hub:
        data = Path(hub.settings["data"])
        before = fingerprint(data)
        password, repo = hub.settings["password"], "file://" + hub.settings["course"]
        names = [f"learner-{i:02d}" for i in range(1, CLASS_SIZE + 1)]
        victim = "learner-killed"
        ready = threading.Barrier(CLASS_SIZE + 1)  # the whole room presses "Run all" together
        killed_at = threading.Event()
        results: dict[str, dict] = {}

        def learner_main(name: str) -> None:
            out = results.setdefault(name, {"lessons": [], "failures": []})
            try:
                t0 = time.monotonic()
                learner = Learner(hub.url, name, password)
                learner.login()
                learner.start_server()
                learner.wait_ready()
                out["server_ready_s"] = time.monotonic() - t0
                learner.pull(repo)
            except Exception as e:
                out["failures"].append(f"before the lessons: {type(e).__name__}: {e}")
                ready.abort()
                return
            try:
                ready.wait()
            except threading.BrokenBarrierError:
                out["failures"].append("another learner could not start, so the class never did")
                return
            start = time.monotonic()
            for path in LESSONS:
                if name == victim:
                    try:
                        run_lesson(learner, path, time.monotonic(), on_cell=lambda i: i + 1 == KILL_AFTER and kill())
                    except (HubClientError, OSError, Exception) as e:  # the point: its server is gone
                        out["died_with"] = type(e).__name__
                    return
                lesson = run_lesson(learner, path, start if path == LESSONS[0] else time.monotonic())
                out["lessons"].append(lesson)
                out["failures"] += lesson.pop("failures")
            out["total_s"] = time.monotonic() - start

        def kill() -> None:
            """Kill the victim's server and kernel at once, as the kernel's OOM killer or a crash would."""
            pids = learner_processes(state, victim)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            results[victim]["killed"] = len(pids)
            killed_at.set()
            time.sleep(1)

        threads = [threading.Thread(target=learner_main, args=(n,), name=n) for n in [*names, victim]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=3600)
        assert not any(t.is_alive() for t in threads), "a learner never finished"

        # memory: each learner's server at its peak (the kernels report their own peaks)
        for name in names:
            pids = learner_processes(state, name)
            results[name]["server_peak_mib"] = sum(peak_rss_mib(p) for p in pids)

    # The class: every learner ran both lessons with the stored figures, and the victim took nobody down.
    failures = {n: r["failures"] for n, r in results.items() if r["failures"]}
    assert not failures, json.dumps(failures, indent=1)[:6000]
    assert killed_at.is_set() and results[victim]["killed"] >= 2 and "died_with" in results[victim]
    for name in names:
        assert [r["lesson"] for r in results[name]["lessons"]] == [p.name for p in LESSONS]
        for lesson in results[name]["lessons"]:
            assert lesson["calls"] == {"extract": 0, "decode": 0, "download": 0}, (name, lesson)
            assert lesson["log"] == [], (name, lesson["log"])
    # The shared data: no name, size, mode or time changed (a write changes the change time), caches' bytes alike.
    assert fingerprint(data) == before

    summary = summarize(results, names)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "hub-class.json").write_text(json.dumps({"summary": summary, "learners": results}, indent=1))
    print(json.dumps(summary, indent=1))


def summarize(results: dict, names: list[str]) -> dict:
    def spread(values: list[float]) -> dict:
        return {"median": round(statistics.median(values), 1), "worst": round(max(values), 1)}

    runs = {n: {x["lesson"]: x for x in results[n]["lessons"]} for n in names}
    lessons = {p.name: [runs[n][p.name] for n in names] for p in LESSONS}
    return {
        "learners": len(names),
        "cpus": os.cpu_count(),
        "server_ready_s": spread([results[n]["server_ready_s"] for n in names]),
        "first_cell_s": spread([lessons[LESSONS[0].name][i]["first_cell_s"] for i in range(len(names))]),
        "total_s": spread([results[n]["total_s"] for n in names]),
        "per_lesson": {
            name: {
                "first_cell_s": spread([x["first_cell_s"] for x in runs]),
                "total_s": spread([x["total_s"] for x in runs]),
                "cpu_s": spread([x["cpu_s"] for x in runs]),
                "kernel_peak_mib": spread([x["kernel_peak_mib"] for x in runs]),
            }
            for name, runs in lessons.items()
        },
        "server_peak_mib": spread([results[n]["server_peak_mib"] for n in names]),
        "reconnects": sum(x["reconnects"] for n in names for x in results[n]["lessons"]),
    }
