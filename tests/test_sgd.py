"""What lessons 01 and 02 build (helpers.sgd, helpers.basic_optim) and the course's fast loader
(helpers.data.tensor_loader), on small known inputs."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from helpers import basic_optim, data, sgd


def test_mnist_loss_known_values():
    preds = torch.tensor([[0.0], [2.0], [-2.0]])
    targets = torch.tensor([[1.0], [1.0], [0.0]])
    s = torch.sigmoid(torch.tensor(2.0))
    expected = (0.5 + (1 - s) + (1 - s)) / 3  # a 3 at 0.5 is half wrong; confident right answers are nearly 0
    assert torch.isclose(sgd.mnist_loss(preds, targets), expected)
    # better predictions give a smaller loss
    assert sgd.mnist_loss(preds + torch.tensor([[1.0], [1.0], [-1.0]]), targets) < sgd.mnist_loss(preds, targets)


def test_mnist_loss_refuses_the_silent_broadcast():
    preds, targets = torch.zeros(5, 1), torch.ones(5)
    with pytest.raises(ValueError) as e:
        sgd.mnist_loss(preds, targets)
    msg = str(e.value)
    assert "(5, 1)" in msg and "(5,)" in msg and "targets.view(-1, 1)" in msg
    with pytest.raises(ValueError, match="make them the same shape"):
        sgd.batch_accuracy(torch.zeros(5, 1), torch.zeros(4, 1))


@pytest.mark.parametrize("bad", [3.0, 7.0, -1.0, 0.5])
def test_mnist_loss_refuses_targets_other_than_0_and_1(bad):
    """Digits (3, 7) or soft labels as targets would be read as 7s without a word: say what it expects."""
    targets = torch.tensor([[1.0], [bad], [0.0]])
    with pytest.raises(ValueError, match=r"expects targets of 1 \(a 3\) or 0 \(a 7\), not " + str(bad)):
        sgd.mnist_loss(torch.zeros(3, 1), targets)
    sgd.mnist_loss(torch.zeros(3, 1), torch.tensor([[1], [0], [1]]))  # integer 0/1 targets are fine


def test_validate_epoch_refuses_an_empty_loader():
    with pytest.raises(ValueError, match="loader with no batches"):
        sgd.validate_epoch(lambda xb: xb, [])
    with pytest.raises(ValueError, match="loader with no batches"):
        sgd.validate_epoch(lambda xb: xb, data.tensor_loader(torch.zeros(0, 1), torch.zeros(0, 1), 4))


def test_batch_accuracy():
    preds = torch.tensor([[3.0], [-1.0], [0.5], [-0.5]])
    targets = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    assert sgd.batch_accuracy(preds, targets).item() == 0.5


def test_validate_epoch_weights_batches_by_size():
    # 5 items in batches of 4 and 1: the short batch must count for one item, not for half.
    x = torch.tensor([[1.0], [1.0], [1.0], [1.0], [1.0]])
    y = torch.tensor([[1.0], [1.0], [1.0], [1.0], [0.0]])
    dl = data.tensor_loader(x, y, 4)
    assert sgd.validate_epoch(lambda xb: xb, dl) == 0.8  # the seeds' unweighted mean would say 0.5


def test_calc_grad_accumulates_until_reset():
    w = torch.ones(3, 1, requires_grad=True)
    x, y = torch.randn(8, 3), torch.ones(8, 1)
    sgd.calc_grad(x, y, lambda xb: xb @ w)
    g1 = w.grad.clone()
    sgd.calc_grad(x, y, lambda xb: xb @ w)
    assert torch.allclose(w.grad, 2 * g1)


def test_train_epoch_lowers_the_loss_and_resets_gradients():
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, :1] > 0).float()
    w, b = sgd.init_params((4, 1)), sgd.init_params(1)
    model = lambda xb: xb @ w + b  # noqa: E731
    before = sgd.mnist_loss(model(x), y).item()
    dl = data.tensor_loader(x, y, 16)
    for _ in range(5):
        sgd.train_epoch(model, dl, 1.0, (w, b))
    assert sgd.mnist_loss(model(x), y).item() < before
    assert torch.count_nonzero(w.grad) == 0 and torch.count_nonzero(b.grad) == 0


def _linear_pair():
    torch.manual_seed(1)
    a = nn.Linear(20, 1)
    b = nn.Linear(20, 1)
    b.load_state_dict(a.state_dict())
    return a, b


def test_basic_optim_matches_torch_sgd_over_many_steps():
    a, b = _linear_pair()
    torch.manual_seed(2)
    x, y = torch.randn(256, 20), (torch.rand(256, 1) > 0.5).float()
    dl = data.tensor_loader(x, y, 32)
    hist_a = basic_optim.train_model(a, 3, dl, dl, basic_optim.BasicOptim(a.parameters(), 0.5))
    hist_b = basic_optim.train_model(b, 3, dl, dl, torch.optim.SGD(b.parameters(), 0.5))
    assert hist_a == hist_b
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))


def test_basic_optim_zero_grad_clears():
    a, _ = _linear_pair()
    opt = basic_optim.BasicOptim(a.parameters(), 0.1)
    sgd.mnist_loss(a(torch.randn(4, 20)), torch.ones(4, 1)).backward()
    opt.step()
    opt.zero_grad()
    assert all(p.grad is None for p in a.parameters())


def test_tensor_loader_gives_dataloaders_batches():
    x, y = torch.randn(100, 3), torch.randn(100, 1)
    slow = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(5))
    fast = data.tensor_loader(x, y, 16, shuffle=True, generator=torch.Generator().manual_seed(5))
    for _ in range(2):  # two epochs: the shuffles stay in step
        pairs = list(zip(slow, fast))
        assert len(pairs) == 7
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in pairs)


@pytest.mark.parametrize("n, bs", [(64, 16), (10, 3), (5, 8)])
def test_tensor_loader_sequential_and_drop_last(n, bs):
    x, y = torch.arange(n).float().view(n, 1), torch.arange(n)
    for drop_last in (False, True):
        slow = DataLoader(TensorDataset(x, y), batch_size=bs, drop_last=drop_last)
        fast = data.tensor_loader(x, y, bs, drop_last=drop_last)
        assert len(slow) == len(fast)
        assert [b[1].tolist() for b in slow] == [b[1].tolist() for b in fast]
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    slow = DataLoader(TensorDataset(x, y), batch_size=bs, shuffle=True, drop_last=True, generator=g1)
    fast = data.tensor_loader(x, y, bs, shuffle=True, drop_last=True, generator=g2)
    for _ in range(3):
        assert [b[1].tolist() for b in slow] == [b[1].tolist() for b in fast]


def test_tensor_loader_copies_only_what_it_must():
    x, y = torch.arange(20.0).view(10, 2), torch.arange(10)
    xb, yb = next(iter(data.tensor_loader(x, y, 4)))  # unshuffled: a view, as x[0:4] is
    assert xb.untyped_storage().data_ptr() == x.untyped_storage().data_ptr() and torch.equal(xb, x[:4])
    xb, yb = next(iter(data.tensor_loader(x, y, 4, shuffle=True, generator=torch.Generator().manual_seed(0))))
    xb += 100  # shuffled: a copy, so the data stay as they were
    assert torch.equal(x, torch.arange(20.0).view(10, 2)) and torch.equal(xb - 100, x[yb])


def test_tensor_loader_without_generator_follows_the_global_seed():
    x, y = torch.randn(50, 2), torch.arange(50)
    torch.manual_seed(3)
    a = [b[1].tolist() for b in DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)]
    torch.manual_seed(3)
    b = [b[1].tolist() for b in data.tensor_loader(x, y, 8, shuffle=True)]
    assert a == b


def test_init_params_same_on_every_device():
    torch.manual_seed(3)
    a = sgd.init_params((5, 1), device="cpu")
    torch.manual_seed(3)
    b = sgd.init_params((5, 1))
    assert a.requires_grad and torch.equal(a, b)


def test_init_params_draws_at_the_scale_it_is_given():
    torch.manual_seed(0)
    for std in (1.0, 0.1, 0.01):
        p = sgd.init_params(10_000, std=std)
        assert p.std().item() == pytest.approx(std, rel=0.05) and abs(p.mean().item()) < 3 * std / 100
    assert sgd.init_params((3, 4)).shape == (3, 4)


def test_train_epoch_steps_by_the_learning_rate_and_uses_its_loss():
    x, y = torch.ones(4, 1), torch.ones(4, 1)
    dl = data.tensor_loader(x, y, 4)
    moved = {}
    for lr in (0.5, 1.0):
        w = torch.zeros(1, 1, requires_grad=True)
        sgd.train_epoch(lambda xb: xb @ w, dl, lr, [w])
        moved[lr] = w.item()
    assert moved[1.0] == pytest.approx(2 * moved[0.5]) and moved[0.5] > 0  # one step of lr * 0.25 (sigmoid slope)
    w = torch.zeros(1, 1, requires_grad=True)
    sgd.train_epoch(lambda xb: xb @ w, dl, 1.0, [w], loss_func=lambda p, t: ((p - t) ** 2).mean())
    assert w.item() == pytest.approx(2.0)  # the squared error's gradient at 0 is -2


def test_validate_epoch_uses_its_metric():
    x, y = torch.ones(5, 1), torch.ones(5, 1)
    dl = data.tensor_loader(x, y, 2)
    assert sgd.validate_epoch(lambda xb: xb, dl) == 1.0
    assert sgd.validate_epoch(lambda xb: xb, dl, metric=lambda p, t: (p * 0).mean()) == 0.0


def test_stack_3s_and_7s():
    x, y = sgd.stack_3s_and_7s(torch.zeros(2, 28, 28), torch.ones(3, 28, 28))
    assert x.shape == (5, 784) and y.view(-1).tolist() == [1, 1, 0, 0, 0]


# ----------------------------------------------------------------------------- helpers.plots.gv (lesson 00's diagram)
SEVEN_STEPS = "init->predict->loss->gradient->step->stop\nstep->predict[label=repeat]"


def test_gv_is_a_left_to_right_graphviz_digraph():
    from helpers import plots

    if not plots._graphviz_available():
        pytest.skip("graphviz (the Python package and its `dot` program) is not installed")
    g = plots.gv(SEVEN_STEPS)
    assert g.source.strip() == 'digraph G{ rankdir="LR"' + SEVEN_STEPS + "; }"
    svg = g.pipe(format="svg").decode()
    assert all(f">{word}</text>" in svg for word in ("init", "predict", "stop", "repeat"))


def test_gv_draws_the_same_edges_with_matplotlib_without_graphviz(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers import plots

    monkeypatch.setattr(plots.shutil, "which", lambda name: None)  # no `dot` program
    monkeypatch.setattr(plt, "show", lambda: None)
    plt.close("all")
    assert plots.gv(SEVEN_STEPS) is None
    ax = plt.gcf().axes[0]
    texts = [t.get_text() for t in ax.texts if t.get_text()]
    assert texts == ["init", "predict", "loss", "gradient", "step", "stop", "repeat"]
    arrows = [t for t in ax.texts if not t.get_text()]
    assert len(arrows) == 6  # five along the row, one arc back
    plt.close("all")


def test_gv_fallback_refuses_what_it_cannot_draw():
    from helpers import plots

    assert plots._parse_edges("a->b[label=x]; b->c") == [("a", "b", "x"), ("b", "c", "")]
    with pytest.raises(ValueError, match="a->b->c"):
        plots._parse_edges("a -- b")


def test_plot_history_numbers_steps_from_first(monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from helpers import plots

    monkeypatch.setattr(plt, "show", lambda: None)
    plt.close("all")
    plots.plot_history({"acc": [0.5, 0.6, 0.7]})
    assert list(plt.gcf().axes[0].lines[0].get_xdata()) == [1, 2, 3]
    plots.plot_history({"acc": [0.5, 0.6, 0.7]}, first=2)  # a history measured after epochs 2, 3 and 4
    assert list(plt.gcf().axes[0].lines[0].get_xdata()) == [2, 3, 4]
    plt.close("all")
