"""helpers.learner: the events in fastai's order, cancelling by exception, the recorder and the
device, and the same per-batch losses as fastai's `Learner` on the same batches."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import learner as L
from helpers.mnist import Mnist_NN
from helpers.sgd import tensor_loader


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


def make_learner(cbs=(), lr=0.1, **kw):
    torch.manual_seed(0)
    kw.setdefault("device", "cpu")
    learn = L.Learner(
        L.DataLoaders(*loaders()),
        Mnist_NN(),
        nn.CrossEntropyLoss(),
        lr=lr,
        cbs=cbs,
        metrics=[accuracy],
        progress=False,
        **kw,
    )
    learn.logger = lambda row: None
    return learn


class Events(L.Callback):
    """Writes down every event it sees."""

    def __init__(self):
        self.seen = []
        for e in L.EVENTS:
            setattr(self, e, lambda e=e: self.seen.append(e))


def test_events_come_in_fastais_order():
    cb = Events()
    learn = L.Learner(
        L.DataLoaders(*loaders(n=100, n_valid=32)),
        Mnist_NN(),
        nn.CrossEntropyLoss(),
        cbs=[cb],
        device="cpu",
        progress=False,
    )
    learn.logger = lambda row: None
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
    assert cb.seen == (
        ["before_fit", "before_epoch", "before_train"]
        + train_batch * 2
        + ["after_train", "before_validate"]
        + valid_batch
        + ["after_validate", "after_epoch", "after_fit"]
    )


def test_callbacks_run_in_order_and_events_are_fastais():
    import fastai.callback.core as fcore

    assert set(L.EVENTS) == set(fcore._events) - {"after_create"}
    calls = []

    class A(L.Callback):
        order = 5

        def before_fit(self):
            calls.append("A")

    class B(L.Callback):
        order = -20

        def before_fit(self):
            calls.append("B")

    learn = make_learner()
    learn.fit(1, cbs=[A(), B()])
    assert calls == ["B", "A"]
    assert not hasattr(learn, "a") and learn.recorder is learn.cbs[1]  # fit-only callbacks are gone afterwards


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
    assert len(learn.recorder.losses) == (0 if where == "after_pred" else 4)  # no loss, nothing to record
    assert len(learn.recorder.values) == 1
    assert seen == [exc.__name__[6:-9].lower()] * 4


def test_cancel_fit_and_epoch():
    class StopAfter(L.Callback):
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


def test_recorder_weights_metrics_by_batch_size():
    learn = make_learner()
    learn.fit(1)
    _, _, vx, vy = data()  # 70 = 32 + 32 + 6: a short last batch
    with torch.no_grad():
        pred = learn.model(vx)
    valid_loss, acc = learn.recorder.values[0][1:]
    assert valid_loss == pytest.approx(nn.functional.cross_entropy(pred, vy).item(), abs=1e-6)
    assert acc == pytest.approx(accuracy(pred, vy).item(), abs=1e-6)
    assert learn.recorder.lrs == [0.1] * 4 and learn.recorder.names == [
        "epoch",
        "train_loss",
        "valid_loss",
        "accuracy",
        "time",
    ]


def test_device_placement():
    from helpers import get_device

    assert L.Learner(None, Mnist_NN(), nn.CrossEntropyLoss(), progress=False).device == get_device()
    learn = make_learner()
    learn.fit(1)
    assert next(learn.model.parameters()).device == learn.xb.device == learn.device == torch.device("cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_model_and_batches_go_to_cuda():
    learn = make_learner(device="cuda")  # model and loaders on the CPU
    learn.fit(1)
    assert next(learn.model.parameters()).is_cuda and learn.xb.is_cuda and learn.yb.is_cuda


def test_progress_bar_writes_the_table(capsys):
    learn = L.Learner(L.DataLoaders(*loaders()), Mnist_NN(), nn.CrossEntropyLoss(), device="cpu", metrics=[accuracy])
    learn.fit(2)
    out = capsys.readouterr().out
    assert "epoch" in out and "valid_loss" in out and "accuracy" in out
    assert learn.logger is print  # restored after the fit


def test_same_losses_as_fastai_learner():
    """Mnist_NN, same start, same batches, SGD: every training batch's loss equal to 1e-5."""
    import fastai.callback.progress  # noqa: F401  (no_bar)
    from fastai.basics import SGD, Callback, DataLoaders, Learner

    class Losses(L.Callback):
        def before_fit(self):
            self.values = []

        def after_batch(self):
            if self.learn.training:
                self.values.append(self.learn.loss.item())

    class FastaiLosses(Callback):
        def before_fit(self):
            self.values = []

        def after_batch(self):
            if self.training:
                self.values.append(self.learn.loss.item())

    ours, theirs = Losses(), FastaiLosses()
    torch.manual_seed(0)
    model = Mnist_NN()
    twin = Mnist_NN()
    twin.load_state_dict(model.state_dict())
    learn = L.Learner(
        L.DataLoaders(*loaders(n=640)),
        model,
        nn.CrossEntropyLoss(),
        lr=0.1,
        cbs=[ours],
        metrics=[accuracy],
        device="cpu",
        progress=False,
    )
    learn.logger = lambda row: None
    learn.fit(3)
    fl = Learner(
        DataLoaders(*loaders(n=640)),
        twin,
        loss_func=nn.CrossEntropyLoss(),
        opt_func=SGD,
        lr=0.1,
        cbs=[theirs],
        metrics=accuracy,
    )
    with fl.no_bar(), fl.no_logging():
        fl.fit(3)
    assert len(ours.values) == len(theirs.values) == 30
    assert max(abs(a - b) for a, b in zip(ours.values, theirs.values)) < 1e-5
    for a, b in zip(learn.recorder.values, fl.recorder.values):
        assert a == pytest.approx(list(b), abs=1e-5)  # smoothed train loss, valid loss, accuracy


def lesson05_learner():
    """Lesson 05's hand-written Learner with its own callbacks, events and exceptions."""
    from test_lessons_agree import from_lesson

    import helpers
    from tools.classroom import lesson

    nb = lesson("05").name
    ns = {"helpers": helpers}
    for name in (
        "Callback",
        "run_event",
        "with_events",
        "CancelFitException",
        "CancelEpochException",
        "CancelTrainException",
        "CancelValidException",
        "CancelBatchException",
    ):
        ns[name] = from_lesson(nb, name, **ns)
    for name in ("TrainEvalCallback", "Recorder", "DataLoaders"):
        ns[name] = from_lesson(nb, name, **ns)
    return from_lesson(nb, "Learner", **ns), ns


def test_lesson05_learner_matches_helpers():
    Lesson, ns = lesson05_learner()
    runs = []
    for make in (Lesson, L.Learner):
        torch.manual_seed(0)
        kw = {} if make is Lesson else {"progress": False}
        learn = make(
            ns["DataLoaders"](*loaders(n=300)),
            Mnist_NN(),
            nn.CrossEntropyLoss(),
            lr=0.1,
            metrics=[accuracy],
            device="cpu",
            **kw,
        )
        learn.logger = lambda row: None
        learn.fit(2)
        runs.append((learn.recorder.losses, [v[-2:] for v in learn.recorder.values], learn.model))
    (la, va, ma), (lb, vb, mb) = runs
    assert la == lb and len(la) == 10
    assert all(a == pytest.approx(b, abs=1e-6) for a, b in zip(va, vb))  # valid loss, accuracy
    assert all(torch.equal(p, q) for p, q in zip(ma.parameters(), mb.parameters()))


def test_lesson05_cancel_fit_stops_the_lesson_learner_too():
    Lesson, ns = lesson05_learner()

    class Stop(ns["Callback"]):
        order = 60

        def after_batch(self):
            if self.learn.training and self.learn.train_iter == 2:
                raise ns["CancelFitException"]

    learn = Lesson(ns["DataLoaders"](*loaders()), Mnist_NN(), nn.CrossEntropyLoss(), cbs=[Stop()], device="cpu")
    learn.fit(3)
    assert learn.train_iter == 2 and len(learn.recorder.losses) == 2 and learn.recorder.values == []
