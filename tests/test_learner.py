"""helpers.learner, as lesson 05 builds it: the events in fastai's order, cancelling by exception,
the recorder, the device, and behaviour pinned against fastai's `Learner` on the same batches
(the losses, `fit` without a learning rate, a cancelled validation, the optimizer kept across fits)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import learner as L
from helpers.data import tensor_loader
from helpers.mnist import Mnist_NN


def data(n=200, n_valid=70, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, vx = torch.rand(n, 784, generator=g), torch.rand(n_valid, 784, generator=g)
    y, vy = torch.randint(0, 10, (n,), generator=g), torch.randint(0, 10, (n_valid,), generator=g)
    return x, y, vx, vy


def loaders(bs=64, seed=42, **kw):
    x, y, vx, vy = data(**kw)
    return (
        tensor_loader(x, y, bs, shuffle=True, generator=torch.Generator().manual_seed(seed)),
        tensor_loader(vx, vy, 32),
    )


def accuracy(pred, targ):
    return (pred.argmax(1) == targ).float().mean()


def make_learner(cbs=(), lr=0.1, model=None, **kw):
    torch.manual_seed(0)
    learn = L.Learner(
        L.DataLoaders(*loaders()), model or Mnist_NN(), nn.CrossEntropyLoss(), lr=lr, cbs=cbs, metrics=[accuracy], **kw
    )
    learn.device, learn.logger = torch.device("cpu"), lambda row: None
    return learn


def fastai_learner(cbs=(), lr=0.1, model=None, **kw):
    """fastai's Learner on the same batches, from the same start as `make_learner`."""
    import fastai.callback.progress  # noqa: F401  (no_bar)
    from fastai.basics import DataLoaders, Learner

    torch.manual_seed(0)
    return Learner(
        DataLoaders(*loaders()), model or Mnist_NN(), loss_func=nn.CrossEntropyLoss(), lr=lr, cbs=list(cbs), **kw
    )


class Events(L.Callback):
    """Writes down every event it sees."""

    def __init__(self):
        self.seen = []
        for e in L.EVENTS:
            setattr(self, e, lambda e=e: self.seen.append(e))


def test_events_come_in_fastais_order():
    import fastai.callback.core as fcore

    assert L.EVENTS == list(fcore._events)  # 24 events, after_create first
    cb = Events()
    learn = L.Learner(L.DataLoaders(*loaders(n=100, n_valid=32)), Mnist_NN(), nn.CrossEntropyLoss(), cbs=[cb])
    learn.device, learn.logger = torch.device("cpu"), lambda row: None
    assert cb.seen == ["after_create"]
    learn.fit(1)
    train_batch = [
        "before_batch",
        "after_pred",
        "after_loss",
        "before_backward",
        "after_backward",
        "before_step",
        "after_step",
        "after_batch",
    ]
    valid_batch = ["before_batch", "after_pred", "after_loss", "after_batch"]
    assert cb.seen[1:] == (
        ["before_fit", "before_epoch", "before_train"]
        + train_batch * 2
        + ["after_train", "before_validate"]
        + valid_batch
        + ["after_validate", "after_epoch", "after_fit"]
    )


def test_callbacks_run_in_order_and_fit_only_callbacks_leave():
    calls = []

    class First(L.Callback):
        order = -20

        def before_fit(self):
            calls.append("first")

    class Later(L.Callback):
        order = 5

        def before_fit(self):
            calls.append("later")

    learn = make_learner()
    learn.fit(1, cbs=[Later(), First()])
    assert calls == ["first", "later"]
    assert not hasattr(learn, "first") and not hasattr(learn, "later") and len(learn.cbs) == 2
    assert learn.recorder is learn.cbs[1] and learn.train_eval is learn.cbs[0]


def test_with_events_runs_after_only_for_its_own_cancel():
    seen = []

    class Shout(L.Callback):
        def __init__(self, error):
            self.error = error

        def before_batch(self):
            raise self.error

        def after_batch(self):
            seen.append("after_batch")

        def after_fit(self):
            seen.append("after_fit")

    def tiny_fit(cb):
        L.with_events(
            [cb],
            lambda: L.with_events([cb], lambda: None, "batch", L.CancelBatchException),
            "fit",
            L.CancelFitException,
        )

    tiny_fit(Shout(L.CancelBatchException()))
    assert seen == ["after_batch", "after_fit"]
    seen.clear()
    tiny_fit(Shout(L.CancelFitException()))
    assert seen == ["after_fit"]  # the coarser cancel skips the batch's after_
    seen.clear()
    with pytest.raises(ValueError):
        tiny_fit(Shout(ValueError("a real error")))
    assert seen == []  # an error skips every after_, after_fit included


@pytest.mark.parametrize(
    "where, exc",
    [
        ("after_pred", L.CancelBatchException),
        ("before_backward", L.CancelBackwardException),
        ("before_step", L.CancelStepException),
    ],
)
def test_cancelling_a_batch_backward_or_step_leaves_the_weights(where, exc):
    seen = []

    class Cancel(L.Callback):
        def after_cancel_batch(self):
            seen.append("batch")

        def after_cancel_backward(self):
            seen.append("backward")

        def after_cancel_step(self):
            seen.append("step")

    def cancel(self):
        if self.learn.training:
            raise exc

    setattr(Cancel, where, cancel)
    learn = make_learner(cbs=[Cancel()])
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.fit(1)
    assert all(torch.equal(a, b) for a, b in zip(before, learn.model.parameters()))
    # a batch cancelled before its loss records no loss (not the previous batch's again)
    assert len(learn.recorder.losses) == (0 if where == "after_pred" else 4)
    assert len(learn.recorder.values) == 1
    assert seen == [exc.__name__[6:-9].lower()] * 4


def test_a_batch_cancelled_before_its_loss_is_not_recorded_twice():
    class SkipSecond(L.Callback):
        def before_batch(self):
            if self.learn.training and self.learn.iter == 1:
                raise L.CancelBatchException

    learn = make_learner(cbs=[SkipSecond()])
    learn.fit(1)
    assert learn.train_iter == 4 and len(learn.recorder.losses) == 3
    assert len(set(learn.recorder.losses)) == 3


def test_cancel_fit_and_epoch():
    class StopAfter(L.Callback):
        order = 60  # after the recorder has kept the batch's loss

        def __init__(self, n, exc):
            self.n, self.exc = n, exc

        def after_batch(self):
            if self.learn.training and self.learn.train_iter >= self.n:
                raise self.exc

    learn = make_learner(cbs=[StopAfter(3, L.CancelFitException)])
    learn.fit(5)
    assert learn.train_iter == 3 and learn.recorder.values == []  # no epoch finished
    learn = make_learner(cbs=[StopAfter(1, L.CancelEpochException)])
    learn.fit(3)
    assert learn.train_iter == 3 and len(learn.recorder.values) == 3  # one batch per epoch, no validation
    assert all(len(v) == 1 for v in learn.recorder.values)


def test_recorder_weights_metrics_by_batch_size_and_keeps_lrs():
    learn = make_learner()
    learn.fit(1)
    _, _, vx, vy = data()  # 70 = 32 + 32 + 6: a short last batch
    with torch.no_grad():
        pred = learn.model(vx)
    valid_loss, acc = learn.recorder.values[0][1:]
    assert valid_loss == pytest.approx(nn.functional.cross_entropy(pred, vy).item(), abs=1e-6)
    assert acc == pytest.approx(accuracy(pred, vy).item(), abs=1e-6)
    assert learn.recorder.lrs == [0.1] * 4 and learn.recorder.iters == [4]
    assert learn.recorder.names == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]


def test_smoothed_loss_is_the_bias_corrected_average():
    learn = make_learner()
    learn.fit(2)
    avg, smooth = 0.0, []
    for n, loss in enumerate(learn.recorder.losses, start=1):
        avg = 0.98 * avg + 0.02 * loss
        smooth.append(avg / (1 - 0.98**n))
    assert learn.recorder.smooth_losses == pytest.approx(smooth)
    assert [row[0] for row in learn.recorder.values] == pytest.approx([smooth[3], smooth[7]])


def test_validation_runs_in_eval_mode_and_training_in_train_mode():
    """A model with dropout: validation must switch it off (its loss is then the eval-mode loss)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(784, 10))
    modes = []

    class Modes(L.Callback):
        def after_pred(self):
            modes.append((self.learn.training, self.learn.model.training))

    learn = make_learner(cbs=[Modes()], model=model, lr=0.0)
    learn.fit(1)
    assert modes == [(True, True)] * 4 + [(False, False)] * 3
    _, _, vx, vy = data()
    model.eval()
    with torch.no_grad():
        expected = nn.functional.cross_entropy(model(vx), vy).item()
    assert learn.recorder.values[0][1] == pytest.approx(expected, abs=1e-6)


def test_device_placement():
    from helpers import get_device

    assert L.Learner(None, Mnist_NN(), nn.CrossEntropyLoss()).device == get_device()
    learn = make_learner()
    learn.fit(1)
    assert next(learn.model.parameters()).device == learn.xb.device == learn.device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_and_batches_go_to_cuda():
    learn = make_learner()  # model and loaders on the CPU
    learn.device = torch.device("cuda")
    learn.fit(1)
    assert next(learn.model.parameters()).is_cuda and learn.xb.is_cuda and learn.yb.is_cuda


def test_progress_bar_writes_the_table(capsys):
    learn = make_learner()
    learn.logger = L.print_row
    learn.fit(2, cbs=[L.ProgressCallback()])
    out = capsys.readouterr().out
    assert "epoch" in out and "valid_loss" in out and "accuracy" in out
    assert learn.logger is L.print_row  # restored after the fit


def test_print_row_formats_numbers_to_four_places(capsys):
    L.print_row([0, 0.123456, 1.0, "00:01"])
    assert capsys.readouterr().out == "0 0.1235 1.0000 00:01\n"


def test_same_losses_as_fastai_learner():
    """Mnist_NN, same start, same batches, SGD: every batch's loss (raw and smoothed) within 1e-5."""
    from fastai.basics import SGD, Callback

    class Raw(Callback):
        def before_fit(self):
            self.values = []

        def after_batch(self):
            if self.training:
                self.values.append(self.learn.loss.item())

    learn = make_learner()
    learn.fit(3)
    fl = fastai_learner(cbs=[Raw()], opt_func=SGD, metrics=accuracy)
    with fl.no_bar(), fl.no_logging():
        fl.fit(3)
    assert len(learn.recorder.losses) == len(fl.raw.values) == len(fl.recorder.losses) == 12
    assert max(abs(a - b) for a, b in zip(learn.recorder.losses, fl.raw.values)) < 1e-5
    assert max(abs(a - float(b)) for a, b in zip(learn.recorder.smooth_losses, fl.recorder.losses)) < 1e-5
    for a, b in zip(learn.recorder.values, fl.recorder.values):
        assert a == pytest.approx(list(b), abs=1e-5)  # smoothed train loss, valid loss, accuracy


def test_fit_without_lr_goes_back_to_the_learners_lr_as_fastai():
    from fastai.basics import SGD

    ours, theirs = make_learner(lr=0.05), fastai_learner(lr=0.05, opt_func=SGD)
    with theirs.no_bar(), theirs.no_logging():
        for learn in (ours, theirs):
            learn.fit(1, lr=0.01)
            after_given = learn.opt.param_groups[0]["lr"] if learn is ours else learn.opt.hypers[0]["lr"]
            learn.fit(1)
            after_plain = learn.opt.param_groups[0]["lr"] if learn is ours else learn.opt.hypers[0]["lr"]
            assert (after_given, after_plain) == (0.01, 0.05)
    assert ours.recorder.lrs == [0.05] * 4  # the second fit trained at the learner's lr


def test_a_cancelled_validation_reports_no_stale_figures_as_fastai():
    """A callback that cancels epoch 1's validation before it starts: that epoch's row holds the
    training loss only, as fastai's does, not epoch 0's validation figures again."""
    from fastai.basics import SGD, CancelValidException
    from fastai.basics import Callback as FastaiCallback

    class SkipValid(L.Callback):
        def before_validate(self):
            if self.learn.epoch == 1:
                raise L.CancelValidException

    class FastaiSkipValid(FastaiCallback):
        order = 0

        def before_validate(self):
            if self.epoch == 1:
                raise CancelValidException

    learn = make_learner(cbs=[SkipValid()])
    learn.fit(3)
    fl = fastai_learner(cbs=[FastaiSkipValid()], opt_func=SGD, metrics=accuracy)
    with fl.no_bar(), fl.no_logging():
        fl.fit(3)
    assert [len(row) for row in learn.recorder.values] == [len(row) for row in fl.recorder.values] == [3, 1, 3]
    for a, b in zip(learn.recorder.values, fl.recorder.values):
        assert a == pytest.approx(list(b), abs=1e-5)


def test_the_optimizer_and_its_state_are_kept_across_fits_as_fastai():
    from fastai.basics import Adam as FastaiAdam

    learn = make_learner(opt_func=torch.optim.Adam, lr=1e-3)
    learn.fit(1)
    opt = learn.opt
    learn.fit(1)
    assert learn.opt is opt
    steps = {int(s["step"]) for s in opt.state.values()}
    assert steps == {8}  # 4 batches in each of the two fits, one optimizer
    fl = fastai_learner(opt_func=FastaiAdam, lr=1e-3)
    with fl.no_bar(), fl.no_logging():
        fl.fit(1)
        fastai_opt = fl.opt
        fl.fit(1)
    assert fl.opt is fastai_opt


def test_splitter_hands_the_optimizer_its_groups():
    def two_groups(model):
        return [{"params": model.lin1.parameters()}, {"params": model.lin2.parameters(), "momentum": 0.5}]

    learn = make_learner(splitter=two_groups)
    learn.create_opt()
    assert [len(g["params"]) for g in learn.opt.param_groups] == [2, 2]
    assert [g["momentum"] for g in learn.opt.param_groups] == [0, 0.5]


def _weights_after(**kw):
    learn = make_learner(**kw)
    learn.fit(1)
    return torch.cat([p.detach().view(-1) for p in learn.model.parameters()])


@pytest.mark.parametrize(
    "changed",
    [
        {"lr": 0.5},
        {"opt_func": torch.optim.Adam},
        {"loss_func": nn.MultiMarginLoss()},
        {"splitter": lambda m: m.lin2.parameters()},  # only the last layer trains
    ],
    ids=["lr", "opt_func", "loss_func", "splitter"],
)
def test_each_argument_of_the_learner_changes_the_result(changed):
    """Each argument the lessons pass changes what training does (none is silently ignored)."""
    base = _weights_after()
    if "loss_func" in changed:
        torch.manual_seed(0)
        learn = L.Learner(L.DataLoaders(*loaders()), Mnist_NN(), changed["loss_func"], lr=0.1)
        learn.device, learn.logger = torch.device("cpu"), lambda row: None
        learn.fit(1)
        other = torch.cat([p.detach().view(-1) for p in learn.model.parameters()])
    else:
        other = _weights_after(**changed)
    assert (base - other).abs().max() > 1e-4
