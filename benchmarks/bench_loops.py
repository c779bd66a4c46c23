"""The training loops two ways on the same work, in one run: the seeds' way against the helpers' way.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_loops.py [--device cpu|cuda] [--epochs 5]

1. Lesson 01's manual SGD (linear model, batches of 256, 12,396 images), twice:
   a. exactly as the seed notebook: `from fastbook import *` makes `DataLoader` fastai's, which
      fetches and collates the 256 (x, y) pairs of `list(zip(x, y))` one by one, for training and
      validation, unshuffled (the seed never shuffled); against the helpers' `tensor_loader`,
      unshuffled too, so both see the same batches;
   b. with PyTorch's `DataLoader` over the same list, shuffled, against `tensor_loader` shuffled
      by the same generator.
   The helpers' `tensor_loader` takes each batch with one indexing operation.
2. Lesson 04's Mnist_NN pass (SGD + weight decay, batches of 64, 50,000 images), the same two ways.
3. fastai `Learner.fit` against a plain PyTorch loop, same model, same batches, same SGD.

Each pair is first checked to give the same results (same batches, same losses or accuracies)
before its time is reported. Times are the best of `--repeat` rounds in which the ways take turns.
"No loader" runs the same steps over batches made beforehand: the most any loader could gain.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

import helpers
from helpers import sgd
from helpers.data import tensor_loader
from helpers.mnist import Mnist_NN, update_with_wd


def best_of(fns, repeat):
    """Run the ways in turn, `repeat` rounds, and keep each one's best time and its result: taking
    turns keeps a machine whose speed drifts from favouring whichever way ran last."""
    best, out = [float("inf")] * len(fns), [None] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            out[i] = fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            best[i] = min(best[i], time.perf_counter() - t0)
    return [x for pair in zip(best, out) for x in pair]


def seeds_loader(x, y, bs, seed):
    """The seeds' way: a Python list of (x, y) pairs, collated item by item."""
    return DataLoader(list(zip(x, y)), batch_size=bs, shuffle=True, generator=torch.Generator().manual_seed(seed))


def helpers_loader(x, y, bs, seed):
    return tensor_loader(x, y, bs, shuffle=True, generator=torch.Generator().manual_seed(seed))


def report(t_seed, t_ours, floor_s, unit, t_steps=None):
    print(f"  seeds' way   : {t_seed:8.3f} s")
    print(f"  helpers' way : {t_ours:8.3f} s")
    print(f"  ratio        : {t_seed / t_ours:8.1f}x faster")
    if t_steps is not None:  # the same steps over batches made beforehand: what a loader that costs nothing gives
        print(
            f"  no loader    : {t_steps:8.3f} s (the steps alone); no loader can make this more than "
            f"{t_seed / t_steps:.1f}x faster than the seeds' way"
        )
    print(f"  floor        : {floor_s:8.3f} s ({unit}); helpers' way is {t_ours / floor_s:.0f}x the floor")


def lesson01(device, epochs, repeat):
    d = helpers.load_3s_and_7s(device)
    x, y = sgd.stack_3s_and_7s(d["train_3"], d["train_7"])
    vx, vy = sgd.stack_3s_and_7s(d["valid_3"], d["valid_7"])
    valid_dl = tensor_loader(vx, vy, 1000)

    def train(make_loader, make_valid=lambda: valid_dl):
        torch.manual_seed(0)
        w, b = sgd.init_params((784, 1), device=device), sgd.init_params(1, device=device)
        model = lambda xb: xb @ w + b  # noqa: E731
        dl, vdl = make_loader(x, y, 256, 42), make_valid()
        return [(sgd.train_epoch(model, dl, 1.0, (w, b)), sgd.validate_epoch(model, vdl))[1] for _ in range(epochs)]

    # floor: each epoch reads the 12,396 x 784 float32 images twice (forward, and the weight gradient)
    floor = epochs * 2 * x.numel() * 4 / 10e9
    from fastai.data.load import DataLoader as FastaiDataLoader

    made, valid_made = list(tensor_loader(x, y, 256)), list(valid_dl)
    t_seed, acc_seed, t_ours, acc_ours, t_steps, acc_steps = best_of(
        [
            lambda: train(
                lambda x, y, bs, _: FastaiDataLoader(list(zip(x, y)), bs=bs),
                lambda: FastaiDataLoader(list(zip(vx, vy)), bs=256),
            ),
            lambda: train(lambda x, y, bs, _: tensor_loader(x, y, bs)),
            lambda: train(lambda *_: made, lambda: valid_made),
        ],
        repeat,
    )
    assert acc_seed == acc_ours == acc_steps, (acc_seed, acc_ours, acc_steps)
    print(
        f"1a. lesson 01 exactly as the seed (fastai DataLoader over a list, unshuffled), {epochs} epochs of "
        f"{len(x)} images: same accuracies {acc_ours[-1]:.4f} both ways"
    )
    report(t_seed, t_ours, floor, "2 reads of 39 MB per epoch at 10 GB/s", t_steps)

    t_seed, acc_seed, t_ours, acc_ours = best_of([lambda: train(seeds_loader), lambda: train(helpers_loader)], repeat)
    assert acc_seed == acc_ours, (acc_seed, acc_ours)
    print(
        f"1b. lesson 01, PyTorch DataLoader over a list, shuffled, {epochs} epochs: "
        f"same accuracies {acc_ours[-1]:.4f} both ways"
    )
    report(t_seed, t_ours, floor, "2 reads of 39 MB per epoch at 10 GB/s", t_steps)  # same steps as 1a


def mnist_nn_pass(device, repeat):
    m = helpers.load_mnist(device)
    x, y = m["train_x"], m["train_y"]
    loss_func = nn.CrossEntropyLoss()

    def one_pass(make_loader):
        helpers.seed_everything(0)
        model = Mnist_NN().to(device)
        losses = [update_with_wd(model, loss_func, xb, yb, 2e-2, 1e-5) for xb, yb in make_loader(x, y, 64, 42)]
        return losses, model

    made = list(helpers_loader(x, y, 64, 42))
    t_seed, (l_seed, _), t_ours, (l_ours, _), t_steps, (l_steps, _) = best_of(
        [lambda: one_pass(seeds_loader), lambda: one_pass(helpers_loader), lambda: one_pass(lambda *_: made)], repeat
    )
    assert len(l_seed) == len(l_ours) and max(abs(a - b) for a, b in zip(l_seed, l_ours)) < 1e-5
    assert l_steps == l_ours
    print(f"2. lesson 04 Mnist_NN pass, SGD + weight decay, {len(l_ours)} batches of 64: same losses both ways")
    flops = 3 * 2 * x.shape[0] * (784 * 50 + 50 * 10)  # forward + backward ~ 3x forward multiply-adds
    report(t_seed, t_ours, flops / 50e9, f"{flops / 1e9:.0f} GFLOP at 50 GFLOP/s", t_steps)
    return m


def fastai_vs_plain(m, device, repeat):
    import fastai.callback.progress  # noqa: F401  (no_bar)
    from fastai.basics import SGD, DataLoaders, Learner

    x, y = m["train_x"], m["train_y"]
    valid = tensor_loader(m["valid_x"], m["valid_y"], 1000)
    loss_func = nn.CrossEntropyLoss()

    def plain():
        helpers.seed_everything(0)
        model = Mnist_NN().to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for xb, yb in helpers_loader(x, y, 64, 42):
            loss_func(model(xb), yb).backward()
            opt.step()
            opt.zero_grad()
        return model

    def with_fastai():
        helpers.seed_everything(0)
        learn = Learner(
            DataLoaders(helpers_loader(x, y, 64, 42), valid), Mnist_NN().to(device), loss_func=loss_func, opt_func=SGD
        )
        with learn.no_bar(), learn.no_logging():
            learn.fit(1, 0.1)
        return learn.model

    t_plain, a, t_fastai, b = best_of([plain, with_fastai], repeat)
    assert all(torch.allclose(p, q, atol=1e-5) for p, q in zip(a.parameters(), b.parameters()))
    n = (len(x) + 63) // 64
    print(f"3. fastai Learner.fit vs a plain loop, Mnist_NN, SGD, {n} batches of 64 (+ validation): same parameters")
    print(f"  plain loop   : {t_plain:8.3f} s ({t_plain / n * 1e3:.2f} ms per batch)")
    print(f"  Learner.fit  : {t_fastai:8.3f} s ({t_fastai / n * 1e3:.2f} ms per batch)")
    print(f"  overhead     : {(t_fastai - t_plain) / n * 1e3:8.2f} ms per batch ({t_fastai / t_plain:.1f}x)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default=None)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    default_device = helpers.setup()
    device = torch.device(args.device) if args.device else default_device
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    lesson01(device, args.epochs, args.repeat)
    m = mnist_nn_pass(device, args.repeat)
    fastai_vs_plain(m, device, args.repeat)


if __name__ == "__main__":
    main()
