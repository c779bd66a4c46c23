"""Shared code of the lessons "SGD, from scratch to fastai".

Importing this package is cheap: it never imports fastai (lessons 00-02 run on torch alone).
"""

from . import checks, learner, optim, schedules, sgd, storage
from .checks import check
from .core import get_device, quiet_known_warnings, seed_everything, set_print_options, setup
from .data import DataError, load_3s_and_7s, load_mnist

__all__ = [
    "check",
    "checks",
    "DataError",
    "get_device",
    "learner",
    "load_3s_and_7s",
    "load_mnist",
    "optim",
    "quiet_known_warnings",
    "schedules",
    "seed_everything",
    "set_print_options",
    "setup",
    "sgd",
    "storage",
]
