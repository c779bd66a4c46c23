"""Test order for parallel runs: the longest files first.

`make test` runs `pytest -n auto --dist loadfile --no-loadscope-reorder`: each file goes whole to one
worker, in collection order, so starting the long ones first keeps both cores busy to the end
(the default order, by number of items, left the 20-second browser test for last). Items inside a
file keep their order: a notebook's cells must run top to bottom. Files not listed keep their
places after these.
"""

from tools.classroom import lessons

# about how long each takes on 2 cores, longest first: a class of eight on the hub (4-5 min, most of it
# on both cores), the planted bugs (one process running the guard tests again and again), the student
# copies and the grader (2-3 min each), lessons 03-08 (25-45 s each), the concurrent first loads of the
# data (35 s), the hub's other tests (2-3 min, mostly waiting), the browser test (22 s), the
# kill-and-rerun data tests, the other lessons (10-15 s), the nbval harness and the classroom builds
_by_number = {p.name[:2]: f"notebooks/{p.name}" for p in lessons()}
_LONG = [_by_number[n] for n in ("04", "06", "07", "08", "05", "03") if n in _by_number]
LONGEST_FIRST = [
    "tests/test_hub_class.py",
    "tests/test_mutations.py",
    "tests/test_students.py",  # the student copies of the checked lessons under nbval (2-3 minutes)
    "tests/test_grade.py",  # ten submissions graded, two at a time (about 2.5 minutes)
    *_LONG,
    "tests/test_data_concurrent.py",
    "tests/test_hub.py",
    "tests/test_browser.py",
    "tests/test_data_kill.py",
    *(f for n, f in sorted(_by_number.items()) if f not in _LONG),
    "tests/test_install.py",
    "tests/test_harness.py",
    "tests/test_classroom.py",
]

# Numbers in outputs are compared within each cell's tolerance (tests/nbval_tolerance.py).
pytest_plugins = ["nbval_tolerance"]

# tests/test_harness.py runs the demo notebook unchanged and in edited variants, in one kernel;
# collecting it here as well would start a kernel and import torch once more for the same check.
collect_ignore = ["tests/nbval_demo.ipynb"]


def pytest_collection_modifyitems(session, config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
