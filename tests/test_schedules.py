"""helpers.schedules: lr_find and the one-cycle policy equal to fastai's on the same model and
batches (same learning rates, same suggestion, losses within float32 rounding; learning rate and
momentum at every step to 1e-7)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers import learner as L
from helpers import optim as O
from helpers import schedules as S
from helpers.mnist import Mnist_NN
from helpers.sgd import tensor_loader


def data(n, seed=0):
    """Images of noise labelled by a fixed linear map: learnable, and no files needed."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 784, generator=g)
    w = torch.randn(784, 10, generator=torch.Generator().manual_seed(99))
    return x, (x @ w).argmax(1)


def loaders(n=3200, bs=32):
    x, y = data(n)
    vx, vy = data(500, seed=1)
    return tensor_loader(x, y, bs, shuffle=True, generator=torch.Generator().manual_seed(42)), tensor_loader(
        vx, vy, 250
    )


def ours(n=3200, bs=32):
    torch.manual_seed(0)
    learn = L.Learner(
        L.DataLoaders(*loaders(n, bs)),
        Mnist_NN(),
        nn.CrossEntropyLoss(),
        opt_func=O.Adam,
        lr=1e-3,
        splitter=O.wd_groups,
        device="cpu",
        progress=False,
    )
    learn.logger = lambda row: None
    return learn


def fastais(n=3200, bs=32):
    import fastai.callback.progress  # noqa: F401
    import fastai.callback.schedule  # noqa: F401
    from fastai.basics import DataLoaders, Learner

    torch.manual_seed(0)
    return Learner(DataLoaders(*loaders(n, bs)), Mnist_NN(), loss_func=nn.CrossEntropyLoss())


def test_schedules_shapes():
    f = S.combined_cos(0.25, 0.1, 1.0, 0.0)
    assert f(0) == pytest.approx(0.1) and f(0.25) == pytest.approx(1.0) and f(1) == pytest.approx(0.0, abs=1e-12)
    assert f(0.125) == pytest.approx(0.55)  # halfway up the cosine is the mean
    assert S.sched_exp(1e-7, 10, 0.5) == pytest.approx(1e-7 * 1e4)


def test_valley_equals_fastais_on_random_curves():
    from fastai.callback.schedule import valley

    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        losses = torch.randn(80, generator=g).cumsum(0)
        lrs = torch.logspace(-6, 0, 80)
        i = S.valley(lrs.tolist(), losses.tolist())
        assert valley(lrs, losses, 100)[0] == pytest.approx(lrs[i].item(), rel=1e-7)


def test_lr_find_equals_fastais():
    learn, fl = ours(), fastais()
    before = [p.detach().clone() for p in learn.model.parameters()]
    res = S.lr_find(learn)
    with fl.no_bar():
        sug = fl.lr_find(show_plot=False)
    assert len(res.lrs) == len(fl.recorder.lrs) == 100
    assert res.lrs == pytest.approx(fl.recorder.lrs, rel=1e-12)
    assert max(abs(a - float(b)) for a, b in zip(res.losses, fl.recorder.losses)) < 1e-4  # fastai's are float32
    assert res.valley == pytest.approx(sug.valley, rel=1e-6)  # fastai returns it as float32
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))  # weights restored
    assert all(not s for s in learn.opt.state.values()) and learn.opt.param_groups[0]["lr"] == 1e-3  # optimizer too


def test_lr_find_stops_on_divergence():
    learn, fl = ours(), fastais()
    res = S.lr_find(learn, end_lr=1e4, num_it=100)
    with fl.no_bar():
        fl.lr_find(end_lr=1e4, num_it=100, show_plot=False)
    assert len(res.lrs) == len(fl.recorder.lrs) < 100
    assert res.losses[-1] > 4 * min(res.losses) and max(res.losses[:-1]) <= 4 * min(res.losses)


def test_one_cycle_lr_and_mom_equal_fastais_at_every_step():
    learn, fl = ours(n=1600), fastais(n=1600)
    S.fit_one_cycle(learn, 2, 1e-2)
    with fl.no_bar(), fl.no_logging():
        fl.fit_one_cycle(2, 1e-2)
    for name in ("lr", "mom"):
        a, b = learn.recorder.hps[name], [float(v) for v in fl.recorder.hps[name]]
        assert len(a) == len(b) == 100
        assert max(abs(x - y) for x, y in zip(a, b)) < 1e-7
    assert learn.recorder.hps["lr"][0] == pytest.approx(1e-2 / 25) and max(learn.recorder.hps["lr"]) < 1e-2 + 1e-9
    assert min(learn.recorder.hps["mom"]) > 0.85 - 1e-9 and learn.recorder.hps["mom"][0] == pytest.approx(0.95)
    for a, b in zip(learn.recorder.values, fl.recorder.values):  # and it trains the same: Adam, wd, batches
        assert a == pytest.approx([float(v) for v in b], abs=1e-5)


def test_one_cycle_drives_torch_optimizers_too():
    torch.manual_seed(0)
    learn = L.Learner(
        L.DataLoaders(*loaders(640)),
        Mnist_NN(),
        nn.CrossEntropyLoss(),
        device="cpu",
        progress=False,
        opt_func=lambda p, lr: torch.optim.Adam(p, lr=lr),
    )
    learn.logger = lambda row: None
    S.fit_one_cycle(learn, 1, 1e-2)
    assert learn.opt.param_groups[0]["betas"][0] == pytest.approx(learn.recorder.hps["mom"][-1])
    assert math.isclose(learn.recorder.hps["mom"][0], 0.95) and len(learn.recorder.hps["lr"]) == 20


def lesson06(name, **ns):
    from test_lessons_agree import from_lesson

    from tools.classroom import lesson

    return from_lesson(lesson("06").name, name, math=math, **ns)


def test_lesson06_schedules_and_valley_match_helpers():
    sched_cos = lesson06("sched_cos")
    combined = lesson06("combined_cos", sched_cos=sched_cos)
    ours, theirs = combined(0.25, 4e-4, 1e-2, 1e-7), S.combined_cos(0.25, 4e-4, 1e-2, 1e-7)
    assert all(ours(i / 97) == theirs(i / 97) for i in range(98))
    valley = lesson06("valley")
    g = torch.Generator().manual_seed(3)
    for _ in range(10):
        losses = torch.randn(60, generator=g).cumsum(0).tolist()
        assert valley(losses) == S.valley(list(range(60)), losses)


def test_lesson06_one_cycle_callback_matches_helpers():
    sched_cos = lesson06("sched_cos")
    OneCycle = lesson06("OneCycle", Callback=L.Callback, combined_cos=lesson06("combined_cos", sched_cos=sched_cos))
    a, b = ours(n=640), ours(n=640)
    cb = OneCycle(1e-2)
    a.fit(2, cbs=[cb])
    S.fit_one_cycle(b, 2, 1e-2)
    assert cb.hps == b.recorder.hps and a.recorder.losses == b.recorder.losses


def test_lesson06_lr_finder_matches_helpers():
    import copy

    ns = dict(
        Callback=L.Callback,
        CancelFitException=L.CancelFitException,
        CancelValidException=L.CancelValidException,
        copy=copy,
        set_lr=lesson06("set_lr"),
    )
    LRFinder = lesson06("LRFinder", **ns)
    for name in ("after_batch", "before_validate", "after_fit"):  # the lesson attaches these from a second cell
        setattr(LRFinder, name, lesson06(name, **ns))
    lr_find = lesson06("lr_find", LRFinder=LRFinder, valley=lesson06("valley"))
    a, b = ours(), ours()
    finder, suggestion, index = lr_find(a)
    res = S.lr_find(b)
    assert finder.lrs == res.lrs and finder.losses == pytest.approx(res.losses, rel=1e-12)
    assert (suggestion, index) == (res.valley, res.index)
    assert all(torch.equal(p, q) for p, q in zip(a.model.parameters(), b.model.parameters()))
