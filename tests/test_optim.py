"""helpers.optim, as lesson 06 builds it: every step of SGD with momentum, RMSProp and Adam, with
weight decay both ways, equal to torch.optim and to fastai's optimizers with the same settings
(parameters to 1e-6 over 100 steps); `wd_groups` as fastai's `wd_bn_bias=False`; and the three places
where the lesson deliberately follows torch.optim rather than fastai."""

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
    p = torch.zeros(2, requires_grad=True)
    p.grad = torch.ones(2)
    with pytest.raises(NotImplementedError, match="Optimizer must define update"):
        O.Optimizer([p], lr=0.1).step()
    with pytest.raises(ValueError, match="no parameters"):
        O.SGD([], lr=0.1)


def fastai_no_wd_names(model):
    """The names of the parameters fastai's Learner keeps out of weight decay (wd_bn_bias=False)."""
    from fastai.torch_core import norm_bias_params

    skip = {id(p) for p in norm_bias_params(model, with_bias=True)}
    return {n for n, p in model.named_parameters() if id(p) in skip}


@pytest.mark.parametrize(
    "model",
    [
        nn.Sequential(nn.Linear(4, 8), nn.GroupNorm(2, 8), nn.Linear(8, 2)),
        nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3, bias=False), nn.LayerNorm(4)
        ),
        nn.Sequential(nn.Linear(4, 4), nn.InstanceNorm1d(4, affine=True), nn.Linear(4, 2, bias=False)),
    ],
    ids=["groupnorm", "batchnorm-layernorm", "instancenorm"],
)
def test_wd_groups_keeps_out_what_fastai_keeps_out(model):
    """As fastai: biases and batch/instance/layer-norm parameters get no weight decay; a GroupNorm's
    weight does (fastai's norm_types leaves GroupNorm out), its bias does not."""
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, not_decayed = O.wd_groups(model)
    assert not_decayed["wd"] == 0.0 and "wd" not in decayed
    assert {names[id(p)] for p in not_decayed["params"]} == fastai_no_wd_names(model)
    assert {names[id(p)] for p in decayed["params"]} == set(names.values()) - fastai_no_wd_names(model)


# The three places where the lesson follows torch.optim, not fastai, on purpose.


def test_momentum_is_read_at_every_step_as_torch_not_fixed_at_creation_as_fastai():
    import fastai.optimizer as F

    def two_steps(opt, p, set_mom):
        set_mom(opt)
        for _ in range(2):
            p.grad = torch.ones_like(p)
            opt.step()
        return p.item()

    p, q, r = (torch.zeros(1, requires_grad=True) for _ in range(3))
    ours = two_steps(O.SGD([p], lr=1.0), p, lambda o: o.param_groups[0].update(mom=0.9))
    torchs = two_steps(torch.optim.SGD([q], lr=1.0), q, lambda o: o.param_groups[0].update(momentum=0.9))
    fastais = two_steps(F.SGD([r], lr=1.0), r, lambda o: o.hypers[0].update(mom=0.9))
    assert ours == pytest.approx(torchs) == pytest.approx(-2.9) and fastais == pytest.approx(-2.0)


def test_zero_grad_sets_none_so_a_parameter_without_gradient_stops_as_torch():
    import fastai.optimizer as F

    def moved_after_gradient_stopped(opt, p):
        for i in range(10):
            if i < 5:
                p.grad = torch.ones_like(p)
            before = p.item()
            opt.step()
            opt.zero_grad()
        return p.item() != before

    p, q, r = (torch.zeros(1, requires_grad=True) for _ in range(3))
    assert not moved_after_gradient_stopped(O.Adam([p], 0.1), p) and p.grad is None
    assert not moved_after_gradient_stopped(torch.optim.AdamW([q], 0.1), q)
    assert moved_after_gradient_stopped(F.Adam([r], 0.1), r)  # fastai zeroes the gradient and keeps stepping


def test_rmsprop_honours_eps_as_torch_while_fastai_drops_it():
    import fastai.optimizer as F

    def first_step(opt, p):
        p.grad = torch.full_like(p, 1e-3)
        opt.step()
        return -p.item()

    p, q, r = (torch.zeros(1, requires_grad=True) for _ in range(3))
    ours, torchs = first_step(O.RMSProp([p], 0.1, eps=1e-2), p), first_step(torch.optim.RMSprop([q], 0.1, eps=1e-2), q)
    fastais = first_step(F.RMSProp([r], 0.1, eps=1e-2), r)
    assert ours == pytest.approx(torchs) == pytest.approx(0.1 * 1e-3 / (1e-4 + 1e-2), rel=1e-4)
    assert fastais == pytest.approx(1.0, rel=1e-3)  # as if eps were 1e-8


@pytest.mark.parametrize(
    "base, changed",
    [
        (dict(cls="SGD", lr=0.03), dict(lr=0.01)),
        (dict(cls="SGD", lr=0.03, mom=0.9), dict(mom=0.5)),
        (dict(cls="SGD", lr=0.03, mom=0.9, wd=0.1), dict(wd=0.0)),
        (dict(cls="SGD", lr=0.03, mom=0.9, wd=0.1), dict(decouple_wd=False)),
        (dict(cls="RMSProp", lr=1e-3), dict(sqr_mom=0.9)),
        (dict(cls="RMSProp", lr=1e-3), dict(eps=1e-2)),
        (dict(cls="Adam", lr=1e-3), dict(mom=0.5)),
        (dict(cls="Adam", lr=1e-3), dict(sqr_mom=0.9)),
        (dict(cls="Adam", lr=1e-3), dict(eps=1e-2)),
        (dict(cls="Adam", lr=1e-3), dict(wd=0.0)),
    ],
    ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items() if k != "cls"),
)
def test_each_hyper_parameter_changes_the_steps(base, changed):
    """Every hyper-parameter the lessons mention is used: changing it changes the parameters."""
    base = dict(base)
    cls = getattr(O, base.pop("cls"))
    a = train(lambda p: cls(p, **base), steps=20)
    b = train(lambda p: cls(p, **{**base, **changed}), steps=20)
    assert (a - b).abs().max() > 1e-5
