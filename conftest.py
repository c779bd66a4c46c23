"""Test order for parallel runs: the longest files first.

`make test` runs `pytest -n auto --dist loadfile --no-loadscope-reorder`: each file goes whole to one
worker, in collection order, so starting the long ones first keeps both cores busy to the end
(the default order, by number of items, left the 20-second browser test for last). Items inside a
file keep their order: a notebook's cells must run top to bottom. Figures from `--durations`
on a 2-core machine; files not listed keep their places after these.
"""

LONGEST_FIRST = [  # about how many seconds each takes
    "notebooks/04_full_mnist_fastai.ipynb",  # 30
    "notebooks/03_fastai_learner.ipynb",  # 23
    "tests/test_browser.py",  # 22
    "notebooks/02_linear_and_optimizer.ipynb",  # 13
    "notebooks/01_manual_sgd.ipynb",  # 13
    "tests/test_harness.py",  # 5
    "tests/test_classroom.py",  # 10
]

# Numbers in outputs are compared within each cell's tolerance (tests/nbval_tolerance.py).
pytest_plugins = ["nbval_tolerance"]

# tests/test_harness.py runs the demo notebook unchanged and in edited variants, in one kernel;
# collecting it here as well would start a kernel and import torch once more for the same check.
collect_ignore = ["tests/nbval_demo.ipynb"]


def pytest_collection_modifyitems(session, config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
