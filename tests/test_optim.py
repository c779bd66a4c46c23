"""helpers.optim: every step of SGD with momentum, RMSProp and Adam, with weight decay both ways,
equal to torch.optim and to fastai's optimizers with the same settings (parameters to 1e-6 over
100 steps)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import optim as O
from helpers.mnist import Mnist_NN

STEPS = 100  # at these learning rates the runs are not chaotic: a rounding difference stays small


def train(make_opt, steps=STEPS):
    """Mnist_NN from seed 0, `steps` steps on batches that change a little every step; all parameters."""
    torch.manual_seed(0)
    model = Mnist_NN()
    g = torch.Generator().manual_seed(1)
    x, y = torch.rand(64, 784, generator=g), torch.randint(0, 10, (64,), generator=g)
    opt = make_opt(list(model.parameters()))
    for i in range(steps):
        nn.functional.cross_entropy(model(x + 0.01 * i), y).backward()
        opt.step()
        opt.zero_grad()
    return torch.cat([p.detach().view(-1) for p in model.parameters()])


def fastai_opt(name, **kw):
    import fastai.optimizer as F

    return lambda p: getattr(F, name)(p, **kw)


CASES = {  # ours, torch's (None: torch has no such optimizer), fastai's
    "SGD": (lambda p: O.SGD(p, 0.03), lambda p: torch.optim.SGD(p, 0.03), fastai_opt("SGD", lr=0.03)),
    "SGD momentum, L2": (
        lambda p: O.SGD(p, 0.03, mom=0.9, wd=1e-2, decouple_wd=False),
        lambda p: torch.optim.SGD(p, 0.03, momentum=0.9, weight_decay=1e-2),
        fastai_opt("SGD", lr=0.03, mom=0.9, wd=1e-2, decouple_wd=False),
    ),
    "SGD momentum, decoupled": (
        lambda p: O.SGD(p, 0.03, mom=0.9, wd=1e-2),
        None,
        fastai_opt("SGD", lr=0.03, mom=0.9, wd=1e-2),
    ),
    "RMSProp, L2": (
        lambda p: O.RMSProp(p, 1e-3, wd=1e-2, decouple_wd=False),
        lambda p: torch.optim.RMSprop(p, 1e-3, alpha=0.99, eps=1e-8, weight_decay=1e-2),
        fastai_opt("RMSProp", lr=1e-3, wd=1e-2, decouple_wd=False),
    ),
    "RMSProp, decoupled": (lambda p: O.RMSProp(p, 1e-3, wd=1e-2), None, fastai_opt("RMSProp", lr=1e-3, wd=1e-2)),
    "Adam, L2": (
        lambda p: O.Adam(p, 1e-3, wd=1e-2, decouple_wd=False),
        lambda p: torch.optim.Adam(p, 1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=1e-2),
        fastai_opt("Adam", lr=1e-3, wd=1e-2, decouple_wd=False),
    ),
    "AdamW (fastai's default)": (
        lambda p: O.Adam(p, 1e-3),
        lambda p: torch.optim.AdamW(p, 1e-3, betas=(0.9, 0.99), eps=1e-5, weight_decay=1e-2),
        fastai_opt("Adam", lr=1e-3),
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_equal_to_torch_and_fastai_over_100_steps(case):
    ours, torchs, fastais = CASES[case]
    mine = train(ours)
    start = train(ours, steps=0)
    assert (mine - start).abs().max() > 1e-3  # it did train
    if torchs is not None:
        assert (mine - train(torchs)).abs().max() < 1e-6
    assert (mine - train(fastais)).abs().max() < 1e-6


def test_the_two_weight_decays_differ_for_adam_and_agree_for_plain_sgd():
    l2, decoupled = train(lambda p: O.Adam(p, 1e-3, decouple_wd=False)), train(lambda p: O.Adam(p, 1e-3))
    assert (l2 - decoupled).abs().max() > 1e-4  # Adam divides the L2 term by the gradient's size
    a = train(lambda p: O.SGD(p, 0.03, wd=1e-2, decouple_wd=False))
    b = train(lambda p: O.SGD(p, 0.03, wd=1e-2))
    assert (a - b).abs().max() < 1e-5  # plain SGD: p - lr*(g + wd*p) == (1 - lr*wd)*p - lr*g
    a = train(lambda p: O.SGD(p, 0.03, mom=0.9, wd=1e-2, decouple_wd=False))
    b = train(lambda p: O.SGD(p, 0.03, mom=0.9, wd=1e-2))
    assert (a - b).abs().max() > 1e-3  # with momentum, L2's decay also goes through the momentum


def test_state_dict_round_trip_and_param_groups():
    torch.manual_seed(0)
    model = Mnist_NN()
    groups = O.wd_groups(model)
    assert [len(g["params"]) for g in groups] == [2, 2] and groups[1]["wd"] == 0.0
    assert all(p.dim() == 1 for p in groups[1]["params"])  # the biases
    opt = O.Adam(groups, 1e-3)
    assert opt.param_groups[0]["wd"] == 0.01 and opt.param_groups[1]["wd"] == 0.0
    nn.functional.cross_entropy(model(torch.rand(8, 784)), torch.zeros(8, dtype=torch.long)).backward()
    opt.step()
    sd = opt.state_dict()
    opt.step()
    opt.param_groups[0]["lr"] = 5.0
    opt.load_state_dict(sd)
    assert opt.param_groups[0]["lr"] == 1e-3 and all(s["step"] == 1 for s in opt.state.values())


def test_update_must_be_defined():
    with pytest.raises(NotImplementedError, match="must define update"):
        p = torch.zeros(2, requires_grad=True)
        p.grad = torch.ones(2)
        O.Optimizer([p], {"lr": 0.1}).step()


def lesson06(name, **ns):
    from test_lessons_agree import from_lesson

    from tools.classroom import lesson

    nb = lesson("06").name
    base = {"Optimizer": from_lesson(nb, "Optimizer"), "decay": from_lesson(nb, "decay")}
    return from_lesson(nb, name, **base, **ns)


@pytest.mark.parametrize(
    "name, make_ours, make_helpers",
    [
        (
            "SGD",
            lambda c, p: c(p, 0.03, mom=0.9, wd=1e-2, decouple_wd=False),
            lambda p: O.SGD(p, 0.03, mom=0.9, wd=1e-2, decouple_wd=False),
        ),
        ("SGD", lambda c, p: c(p, 0.03, mom=0.9, wd=1e-2), lambda p: O.SGD(p, 0.03, mom=0.9, wd=1e-2)),
        ("RMSProp", lambda c, p: c(p, 1e-3, wd=1e-2), lambda p: O.RMSProp(p, 1e-3, wd=1e-2)),
        ("Adam", lambda c, p: c(p, 1e-3), lambda p: O.Adam(p, 1e-3)),
        ("Adam", lambda c, p: c(p, 1e-3, decouple_wd=False), lambda p: O.Adam(p, 1e-3, decouple_wd=False)),
    ],
)
def test_lesson06_optimizers_match_helpers(name, make_ours, make_helpers):
    cls = lesson06(name)
    assert torch.equal(train(lambda p: make_ours(cls, p)), train(make_helpers))
