"""The cost of a Learner per batch: ours (helpers.learner) and fastai's against a plain loop.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_learner.py [--device cpu|cuda] [--rounds 7]

Lesson 04's Mnist_NN (784-50-10), SGD at 0.1, one epoch over the 50,000 training images in
batches of 64 (782 batches) and a validation pass over 10,000 images in batches of 1,000, three
ways on the same batches (made beforehand, so that no loader's cost hides the loop's):

1. a plain loop: forward, loss, backward, step, zero_grad; then the validation loss and accuracy;
2. `helpers.learner.Learner.fit(1)` (no progress bar, nothing printed);
3. fastai's `Learner.fit(1)` (`no_bar()`, `no_logging()`).

All three are first checked to end with the same parameters. The ways take turns, one run each per
round, for `--rounds` rounds (a machine's speed drifts; taking turns spreads the drift over all of
them); each way's best and median time per training batch are printed, with the ratio to the plain
loop's: its overhead per batch, divided by the plain loop's cost.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn

import helpers
from helpers.data import tensor_loader
from helpers.learner import DataLoaders, Learner
from helpers.mnist import Mnist_NN


def accuracy(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    return (pred.argmax(dim=1) == targ).float().mean()


def make_ways(device: torch.device) -> tuple[dict[str, Callable[[], nn.Module]], int]:
    """The three ways, each a function that trains a fresh Mnist_NN for one epoch and returns it."""
    import fastai.callback.progress  # noqa: F401  (no_bar)
    from fastai.basics import SGD
    from fastai.basics import DataLoaders as FastaiDataLoaders
    from fastai.basics import Learner as FastaiLearner

    m = helpers.load_mnist(device)
    train = list(
        tensor_loader(m["train_x"], m["train_y"], 64, shuffle=True, generator=torch.Generator().manual_seed(42))
    )
    valid = list(tensor_loader(m["valid_x"], m["valid_y"], 1000))
    loss_func = nn.CrossEntropyLoss()

    def plain() -> nn.Module:
        helpers.seed_everything(0)
        model = Mnist_NN().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        model.train()
        for xb, yb in train:
            loss_func(model(xb), yb).backward()
            opt.step()
            opt.zero_grad()
        model.eval()
        with torch.no_grad():
            total, correct, n = 0.0, 0.0, 0
            for xb, yb in valid:
                pred = model(xb)
                total += loss_func(pred, yb).item() * len(yb)
                correct += accuracy(pred, yb).item() * len(yb)
                n += len(yb)
        return model

    def ours() -> nn.Module:
        helpers.seed_everything(0)
        learn = Learner(DataLoaders(train, valid), Mnist_NN(), loss_func, lr=0.1, metrics=[accuracy])
        learn.device = torch.device(device)
        learn.logger = lambda row: None
        learn.fit(1)
        return learn.model

    def fastai() -> nn.Module:
        helpers.seed_everything(0)
        learn = FastaiLearner(
            FastaiDataLoaders(train, valid),
            Mnist_NN().to(device),
            loss_func=loss_func,
            opt_func=SGD,
            lr=0.1,
            metrics=accuracy,
        )
        with learn.no_bar(), learn.no_logging():
            learn.fit(1)
        return learn.model

    return {"plain loop": plain, "our Learner": ours, "fastai Learner": fastai}, len(train)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default=None)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    default_device = helpers.setup()
    device = torch.device(args.device) if args.device else default_device
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    ways, n = make_ways(device)

    models = {name: way() for name, way in ways.items()}  # also warms every way up
    ref = list(models["plain loop"].parameters())
    for name, model in models.items():
        assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(ref, model.parameters())), name
    print(f"Mnist_NN, SGD 0.1, {n} training batches of 64 + validation: same parameters all three ways")

    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.rounds):
        for name, way in ways.items():
            t0 = time.perf_counter()
            way()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - t0)

    base_best, base_median = min(times["plain loop"]), statistics.median(times["plain loop"])
    print(f"{'':16s} {'best ms/batch':>14s} {'median ms/batch':>16s} {'best ratio':>11s} {'median ratio':>13s}")
    for name, ts in times.items():
        best, median = min(ts), statistics.median(ts)
        print(
            f"{name:16s} {best / n * 1e3:14.3f} {median / n * 1e3:16.3f} {best / base_best:10.2f}x "
            f"{median / base_median:12.2f}x"
        )


if __name__ == "__main__":
    main()
