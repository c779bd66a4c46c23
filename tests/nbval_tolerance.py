"""nbval plugin: numbers in a cell's text outputs are compared within the cell's tolerance.

Training figures move a little with the CPU's kernels, the thread count and the GPU (lesson 04's
one-cycle accuracy prints 0.9654 on one machine and 0.9650 on another), so comparing them byte for
byte fails on a learner's machine, and ignoring them checks nothing. With this plugin a code cell
may say in its metadata how far its printed numbers may move:

    "metadata": {"tolerance": {"abs": 0.005, "rel": 0.0}}

A text output (stdout, stderr, text/plain, text/html, ...) then passes when the text around the
numbers is the same (whitespace aside: tensors re-align when a sign or a digit changes) and every
number is within ``abs + rel * |stored|`` of the stored one. Cells without the key use
``DEFAULT``: every number to the last printed digit. Images are not compared (nbval's default).
The margins come from measurements: see benchmarks/SPREAD.md and benchmarks/spread.py.

It also reads a cell's outputs as a learner sees them when the cell has finished: an output that
the cell later updated in place (fastai's progress bar and training table, `DisplayHandle.update`)
is compared in its final state, as the notebook stores it. nbval itself keeps the first state,
which depends on timing: a slow machine shows an empty progress bar first, a fast one the table.

Loaded by the project's conftest.py (`pythonpath = ["tests"]` in pyproject.toml), so a plain
`pytest notebooks/` uses it; elsewhere, `-p nbval_tolerance` with tests/ on PYTHONPATH.
"""

from __future__ import annotations

import copy
import math
import re
from collections import defaultdict
from typing import Any

import pytest

KEY = "tolerance"
DEFAULT = {"abs": 0.0, "rel": 0.0}
# a signed decimal number, with an optional exponent: 3, -0.25, .5, 1e-05, 2.5E+3
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")


def tolerance_of(metadata: dict[str, Any]) -> dict[str, float]:
    """The cell's tolerance: its metadata's ``tolerance`` over ``DEFAULT``; refuses anything else."""
    given = metadata.get(KEY, {})
    if not isinstance(given, dict) or set(given) - set(DEFAULT):
        raise ValueError(f'cell metadata "{KEY}" must look like {{"abs": 0.005, "rel": 0.0}}, not {given!r}')
    tol = {**DEFAULT, **given}
    if not all(isinstance(v, (int, float)) and 0 <= v < math.inf for v in tol.values()):
        raise ValueError(f'cell metadata "{KEY}": abs and rel must be numbers >= 0, not {given!r}')
    return tol


def split_numbers(text: str) -> tuple[list[str], list[float]]:
    """The text between numbers (whitespace removed) and the numbers themselves, in order."""
    numbers = [float(m) for m in NUMBER.findall(text)]
    between = [re.sub(r"\s+", "", part) for part in NUMBER.split(text)]
    return between, numbers


def within(got: str, stored: str, tol: dict[str, float]) -> bool:
    """Whether ``got`` reads as ``stored``, with each number allowed to move by the tolerance."""
    if got == stored:
        return True
    got_text, got_numbers = split_numbers(got)
    stored_text, stored_numbers = split_numbers(stored)
    if got_text != stored_text or len(got_numbers) != len(stored_numbers):
        return False
    return all(abs(g - s) <= tol["abs"] + tol["rel"] * abs(s) for g, s in zip(got_numbers, stored_numbers))


def _slots(outputs: list, skip: tuple[str, ...]) -> dict[str, list[tuple[dict, str]]]:
    """Where each compared value lives, grouped by key in output order, the way nbval groups them."""
    slots: dict[str, list[tuple[dict, str]]] = defaultdict(list)
    for out in outputs:
        if out.get("output_type") == "stream":
            slots[out["name"]].append((out, "text"))
            continue
        for key in out:
            if key in skip:
                continue
            if key == "data":
                for mime in out["data"]:
                    if mime not in skip:
                        slots[mime].append((out["data"], mime))
            else:
                slots[key].append((out, key))
    return slots


def _compare_within_tolerance(original):
    def compare_outputs(self, test, ref, skip_compare=None):
        """nbval's comparison, after taking every output that is within tolerance as equal."""
        tol = tolerance_of(self.cell.metadata)
        test = copy.deepcopy(test)
        test_slots = _slots(test, skip_compare or self.parent.skip_compare)
        for key, stored in _slots(ref, skip_compare or self.parent.skip_compare).items():
            for (t_box, t_key), (r_box, r_key) in zip(test_slots.get(key, []), stored):
                got, want = self.sanitize(t_box[t_key]), self.sanitize(r_box[r_key])
                if isinstance(got, str) and isinstance(want, str) and within(got, want, tol):
                    t_box[t_key] = r_box[r_key]
        return original(self, test, ref, skip_compare)

    compare_outputs.__wrapped__ = original
    return compare_outputs


def _remember_running_cell(original):
    def runtest(self):
        self.parent.running_cell = self
        return original(self)

    runtest.__wrapped__ = original
    return runtest


def _apply_display_updates(original):
    def get_kernel_message(self, timeout=None, stream="iopub"):
        """nbval's message reader, which also applies `update_display_data` to the running cell's outputs."""
        msg = original(self, timeout=timeout, stream=stream)
        content = msg.get("content", {})
        display_id = content.get("transient", {}).get("display_id")
        if stream != "iopub" or display_id is None:
            return msg
        shown = self.__dict__.setdefault("shown_displays", {})
        if msg["msg_type"] in ("display_data", "execute_result"):
            shown[display_id] = copy.deepcopy(content["data"])
        elif msg["msg_type"] == "update_display_data" and display_id in shown:
            cell = getattr(self, "running_cell", None)
            for out in getattr(cell, "test_outputs", None) or []:
                if out.get("data") == shown[display_id]:
                    out["data"] = copy.deepcopy(content["data"])
            shown[display_id] = copy.deepcopy(content["data"])
        return msg

    get_kernel_message.__wrapped__ = original
    return get_kernel_message


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    """Wrap nbval's comparison and message reader once, when nbval is there to wrap."""
    try:
        from nbval.plugin import IPyNbCell, IPyNbFile
    except ImportError:  # nbval not installed: nothing to extend
        return
    if not hasattr(IPyNbCell.compare_outputs, "__wrapped__"):
        IPyNbCell.compare_outputs = _compare_within_tolerance(IPyNbCell.compare_outputs)
        IPyNbCell.runtest = _remember_running_cell(IPyNbCell.runtest)
        IPyNbFile.get_kernel_message = _apply_display_updates(IPyNbFile.get_kernel_message)
