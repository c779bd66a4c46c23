"""Lesson 04's question: which fastai v1 -> v2 default changes matter for `fit_one_cycle(1, 1e-2)`?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/onecycle_defaults.py [--seeds 0 1 2 3 4 42]

Trains Mnist_NN for one epoch on full MNIST (50,000 train / 10,000 valid) per configuration and
seed, and prints the validation accuracy of each run with the mean, min and max. The reference
(fastai v1) notebook reached 0.9635 in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
from torch import nn

import helpers
from helpers.data import tensor_loader
from helpers.mnist import Mnist_NN

CONFIGS = {
    "fastai 2.8 defaults": {},
    "v1's Adam eps (1e-8)": dict(eps=1e-8),
    "all v1 defaults": dict(eps=1e-8, pct_start=0.3, div_final=25e4, wd_bn_bias=True, drop_last=True),
    "batch size 48": dict(bs=48),
    "batch size 32": dict(bs=32),
    "batch size 32 + eps 1e-8": dict(bs=32, eps=1e-8),
    "lr 2e-2": dict(lr=2e-2),
    "lr 3e-2": dict(lr=3e-2),
    "lr 2e-2 + eps 1e-8": dict(lr=2e-2, eps=1e-8),
}


def run(m, seed, device, eps=1e-5, pct_start=0.25, div_final=1e5, wd_bn_bias=False, drop_last=False, bs=64, lr=1e-2):
    from fastai.basics import Adam, DataLoaders, Learner, accuracy

    helpers.seed_everything(seed)
    g = torch.Generator().manual_seed(seed)
    # v1's DataBunch dropped the last partial training batch
    train = tensor_loader(m["train_x"], m["train_y"], bs, shuffle=True, generator=g, drop_last=drop_last)
    dls = DataLoaders(train, tensor_loader(m["valid_x"], m["valid_y"], 1000))
    learn = Learner(
        dls,
        Mnist_NN().to(device),
        loss_func=nn.CrossEntropyLoss(),
        metrics=accuracy,
        opt_func=partial(Adam, eps=eps),
        wd_bn_bias=wd_bn_bias,
    )
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(1, lr, pct_start=pct_start, div_final=div_final)
    return learn.recorder.values[-1][2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 42])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS))
    args = ap.parse_args()
    device = helpers.setup()
    import fastai.callback.progress  # noqa: F401  (no_bar)
    import fastai.callback.schedule  # noqa: F401  (fit_one_cycle)

    m = helpers.load_mnist(device)
    print(f"device {device}, torch {torch.__version__}, seeds {args.seeds}")
    for name in args.configs:
        t0 = time.perf_counter()
        accs = [run(m, s, device, **CONFIGS[name]) for s in args.seeds]
        print(
            f"{name:26s} mean {statistics.mean(accs):.4f}  min {min(accs):.4f}  max {max(accs):.4f}  "
            f"runs {' '.join(f'{a:.4f}' for a in accs)}  ({(time.perf_counter() - t0) / len(accs):.1f} s/run)"
        )


if __name__ == "__main__":
    main()
