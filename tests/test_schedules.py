"""helpers.schedules, as lesson 07 builds it: lr_find and the one-cycle policy equal to fastai's on
the same model and batches (same learning rates, same suggestion, losses within float32 rounding;
learning rate and momentum at every step to 1e-7), fastai's behaviour for a small `num_it`, and
every argument of the schedule honoured."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from helpers import learner as L
from helpers import optim as O
from helpers import schedules as S
from helpers.data import tensor_loader
from helpers.mnist import Mnist_NN


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
    )
    learn.device, learn.logger = torch.device("cpu"), lambda row: None
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
        v = S.valley(losses.tolist())
        assert v.start <= v.index <= v.end
        assert valley(lrs, losses, 100)[0] == pytest.approx(lrs[v.index].item(), rel=1e-7)


def test_lr_find_equals_fastais():
    learn, fl = ours(), fastais()
    before = [p.detach().clone() for p in learn.model.parameters()]
    res = learn.lr_find()
    with fl.no_bar():
        sug = fl.lr_find(show_plot=False)
    assert len(res.lrs) == len(fl.recorder.lrs) == 100
    assert res.lrs == pytest.approx(fl.recorder.lrs, rel=1e-12)
    assert max(abs(a - float(b)) for a, b in zip(res.losses, fl.recorder.losses)) < 1e-4  # fastai's are float32
    assert res.suggestion == pytest.approx(sug.valley, rel=1e-6)  # fastai returns it as float32
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))  # weights restored
    assert all(not s for s in learn.opt.state.values()) and learn.opt.param_groups[0]["lr"] == 1e-3  # optimizer too


def test_lr_find_stops_on_divergence():
    learn, fl = ours(), fastais()
    res = learn.lr_find(end_lr=1e4, num_it=100)
    with fl.no_bar():
        fl.lr_find(end_lr=1e4, num_it=100, show_plot=False)
    assert len(res.lrs) == len(fl.recorder.lrs) < 100
    assert res.losses[-1] > 4 * min(res.losses) and max(res.losses[:-1]) <= 4 * min(res.losses)


def test_one_cycle_lr_and_mom_equal_fastais_at_every_step():
    learn, fl = ours(n=1600), fastais(n=1600)
    learn.fit_one_cycle(2, 1e-2)
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
        opt_func=lambda p, lr: torch.optim.Adam(p, lr=lr),
    )
    learn.device, learn.logger = torch.device("cpu"), lambda row: None
    learn.fit_one_cycle(1, 1e-2)
    assert learn.opt.param_groups[0]["betas"][0] == pytest.approx(learn.recorder.hps["mom"][-1])
    assert math.isclose(learn.recorder.hps["mom"][0], 0.95) and len(learn.recorder.hps["lr"]) == 20


@pytest.mark.parametrize("num_it", [1, 5, 6, 8])
def test_lr_find_with_few_iterations_behaves_as_fastais(num_it):
    """fastai raises num_it to 6 (the smallest sweep whose window is not empty) and still suggests."""
    learn, fl = ours(), fastais()
    res = learn.lr_find(num_it=num_it)
    with fl.no_bar():
        sug = fl.lr_find(num_it=num_it, show_plot=False)
    assert len(res.lrs) == len(fl.recorder.lrs) == max(num_it, 6)
    assert res.suggestion == pytest.approx(sug.valley, rel=1e-6)


def test_lr_find_says_so_when_the_sweep_stops_before_its_window():
    learn = ours()
    with pytest.raises(ValueError, match="too early for a suggestion"):
        learn.lr_find(start_lr=10, end_lr=1e6)


def test_fit_after_one_cycle_goes_back_to_the_learners_lr_as_fastai():
    learn, fl = ours(n=640), fastais(n=640)
    learn.fit_one_cycle(1, 1e-2)
    learn.fit(1)
    with fl.no_bar(), fl.no_logging():
        fl.fit_one_cycle(1, 1e-2)
        fl.fit(1)
    assert learn.recorder.lrs == [learn.lr] * 20 and fl.recorder.lrs == [fl.lr] * 20


def one_cycle_hps(**kw):
    learn = ours(n=640)
    learn.fit(1, cbs=[S.OneCycle(1e-2, **kw)])
    return learn.recorder.hps


@pytest.mark.parametrize(
    "changed", [{"div": 10.0}, {"div_final": 1e3}, {"pct_start": 0.5}, {"moms": (0.9, 0.8, 0.9)}], ids=str
)
def test_each_argument_of_one_cycle_changes_the_schedule(changed):
    base, other = one_cycle_hps(), one_cycle_hps(**changed)
    assert base["lr"] != other["lr"] or base["mom"] != other["mom"]


def test_pct_start_puts_the_peak_where_it_says():
    for pct in (0.25, 0.5):
        hps = one_cycle_hps(pct_start=pct)
        peak = max(range(20), key=hps["lr"].__getitem__)
        assert peak == round(pct * 20) and min(range(20), key=hps["mom"].__getitem__) == peak
        # the last step is 95% of the way: well into the annealing
        assert hps["lr"][peak] == pytest.approx(1e-2) and hps["lr"][-1] < 1e-2 / 20


@pytest.mark.parametrize("changed", [{"start_lr": 1e-5}, {"end_lr": 1.0}, {"num_it": 50}], ids=str)
def test_each_argument_of_lr_find_changes_the_sweep(changed):
    base, other = ours().lr_find(), ours().lr_find(**changed)
    assert base.lrs != other.lrs


def test_stop_div_false_runs_the_whole_sweep():
    learn = ours()
    assert len(learn.lr_find(end_lr=1e4, num_it=100, stop_div=False).lrs) == 100
