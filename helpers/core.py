"""Device choice, seeding and print settings: the first cell of every lesson calls `setup()`."""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import torch

from . import storage

__all__ = ["get_device", "inline_plots", "seed_everything", "set_print_options", "setup"]


def get_device() -> torch.device:
    """The best device here: ``cuda`` > ``mps`` > ``cpu``; ``SGD_DEVICE=cpu`` forces one."""
    forced = os.environ.get("SGD_DEVICE")
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int = 42) -> None:
    """Seed Python, NumPy and torch (every CUDA device too), and ask cuDNN for repeatable kernels."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def set_print_options() -> None:
    """Print tensors and arrays the same way everywhere, so stored outputs compare across machines."""
    torch.set_printoptions(precision=4, sci_mode=False, linewidth=100)
    np.set_printoptions(precision=4, suppress=True, linewidth=100)


def quiet_known_warnings() -> None:
    """Silence library warnings that say nothing to a learner and would differ between versions."""
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"fastai(\.|$)")
    # raised inside torch when fastai (or fastbook) decorates functions at import time
    warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.script` is deprecated")


def inline_plots() -> None:
    """In a notebook, draw figures inline whatever ``MPLBACKEND`` says.

    Jupyter's kernel picks the inline backend only when ``MPLBACKEND`` is unset; servers and CI
    images often set it to ``Agg``, and the lessons' plots would then be drawn nowhere.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):  # a script or a terminal IPython: leave it alone
        return
    import matplotlib

    if "inline" not in matplotlib.get_backend():
        shell.run_line_magic("matplotlib", "inline")


def setup(seed: int = 42) -> torch.device:
    """Seed everything, fix print and plot settings, and return the device the lesson will use.

    On a class's hub (``SGD_DATA_READONLY=1``) it first checks that the shared data folder is ready, so
    that a lesson's first cell, not a later one, says whom to ask when it is not (``DataError``).
    """
    if storage.shared_readonly():
        storage.check_shared()
    seed_everything(seed)
    set_print_options()
    quiet_known_warnings()
    try:
        import matplotlib

        inline_plots()
        matplotlib.rcParams["image.cmap"] = "Greys"
        matplotlib.rcParams["figure.dpi"] = 72
    except ImportError:  # plotting is optional for scripts
        pass
    return get_device()
