"""Shared code of the lessons "SGD, from scratch to fastai".

Two kinds of module live here. Those a lesson builds on screen are exported from its cells
(`make export`; never edit them by hand): `sgd` (lesson 01), `basic_optim` (02), `mnist` (04),
`learner` (05), `optim` (06), `schedules` (07) and `cnn` (08). The infrastructure that no lesson
teaches is written by hand: `core` (device, seeds, printing), `data` and `storage` (MNIST on disk
and in tensors, and a fast loader), `plots`, and `checks` (the exercises' checks, `helpers.check`).

Importing the package is cheap and imports only the infrastructure (never fastai): a lesson imports
what an earlier lesson built by name, e.g. `from helpers.learner import Learner`.
"""

from . import checks, storage
from .checks import check
from .core import get_device, quiet_known_warnings, seed_everything, set_print_options, setup
from .data import DataError, load_3s_and_7s, load_mnist, tensor_loader

__all__ = [
    "check",
    "checks",
    "DataError",
    "get_device",
    "load_3s_and_7s",
    "load_mnist",
    "quiet_known_warnings",
    "seed_everything",
    "set_print_options",
    "setup",
    "storage",
    "tensor_loader",
]
