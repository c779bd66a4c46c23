"""Device choice, seeding and print settings."""

import random

import numpy as np
import torch

import helpers
from helpers import core


def test_device_preference(monkeypatch):
    monkeypatch.delenv("SGD_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert core.get_device().type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert core.get_device().type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert core.get_device().type == "cpu"
    monkeypatch.setenv("SGD_DEVICE", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert core.get_device().type == "cpu"


def draw():
    return random.random(), float(np.random.rand()), torch.randn(3).tolist()


def test_seed_everything_repeats_every_generator():
    core.seed_everything(7)
    a = draw()
    core.seed_everything(7)
    assert draw() == a
    core.seed_everything(8)
    assert draw() != a


def test_setup_returns_device_and_fixes_printing():
    dev = helpers.setup()
    assert isinstance(dev, torch.device)
    assert repr(torch.tensor([1 / 3, 2e-6])) == "tensor([0.3333, 0.0000])"


def test_helpers_import_from_the_notebooks_folder_without_fastai():
    """The kernel starts in notebooks/: `import helpers` must work there (the package is installed,
    not put on sys.path), and must not pull in fastai."""
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, helpers; print(any(m.split('.')[0] in ('fastai', 'fastbook') for m in sys.modules))"
    notebooks = Path(__file__).resolve().parent.parent / "notebooks"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=notebooks)
    assert out.stdout.strip() == "False"
