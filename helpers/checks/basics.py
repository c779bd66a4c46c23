"""Checks of lessons 00-02 (torch only): distances, gradients, a linear model by hand, an optimizer."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import (
    NotYet,
    accuracies_per_epoch,
    as_number,
    as_tensor,
    call,
    check_for,
    compare,
    describe,
    lesson_value,
    need,
    need_callable,
)


def _mnist_loss(predictions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    predictions = predictions.sigmoid()
    return torch.where(targets == 1, 1 - predictions, predictions).mean()


# ------------------------------------------------------------------------------------------ lesson 00
@check_for("l2_distance", "l2_distance")
def _l2_distance(ns: dict) -> str:
    l2 = need_callable(ns, "l2_distance")
    a, b = torch.rand(5, 28, 28), torch.rand(28, 28)
    got = call(l2, a, b, what="l2_distance(images, one_image) for 5 images of 28x28")
    d = a - b
    compare(
        got,
        (d**2).mean((-1, -2)).sqrt(),
        "l2_distance(images, one_image) for 5 hidden images",
        {
            "you return the mean of the squared differences: take its square root (`.sqrt()`).": (d**2).mean((-1, -2)),
            "that is the L1 distance (the mean absolute difference): square the differences instead.": d.abs().mean(
                (-1, -2)
            ),
            "you average over every dimension, so 5 images give one number: average over the last two "
            "only, `.mean((-1, -2))`, to get one distance per image.": (d**2).mean().sqrt(),
            "you sum the squares: the lesson's distances are means, `.mean((-1, -2))`.": (d**2).sum((-1, -2)).sqrt(),
        },
    )
    return "one distance per image, as the square root of the mean squared difference."


@check_for("mean_difference", "diff")
def _diff(ns: dict) -> str:
    diff = as_tensor(need(ns, "diff"), "`diff`")
    mean3, mean7 = lesson_value(ns, "mean3"), lesson_value(ns, "mean7")
    expected = (mean3 - mean7).detach().float().cpu()
    compare(
        diff,
        expected,
        "`diff`",
        {
            "you computed mean7 - mean3: the sign is swapped, so blue and red trade places.": -expected,
            "you took the absolute value: the sign is what tells which digit has ink there.": expected.abs(),
        },
    )
    return "the ideal 3 minus the ideal 7, pixel by pixel."


@check_for("gradient_at_2", "grad_at_2")
def _grad_at_2(ns: dict) -> str:
    got = need(ns, "grad_at_2")
    if got is None:
        raise NotYet(
            "`grad_at_2` is None: x needs `.requires_grad_()`, and `(x**3 - 2*x).backward()` must run before "
            "`x.grad` holds the gradient."
        )
    value = as_number(got, "`grad_at_2`")
    hints = {
        12.0: "12 is the gradient of x³ alone: the term -2x adds -2.",
        4.0: "4 is f(2), the function's value; the gradient is its slope, f'(2).",
        20.0: "20 is twice the gradient: backward() adds to `.grad`, so running it twice doubles it. "
        "Make x afresh before calling backward() again.",
        -2.0: "-2 is only the gradient of -2x: the term x³ adds 3·2².",
    }
    if abs(value - 10.0) < 1e-4:
        return "f'(2) = 3·2² - 2 = 10."
    for wrong, hint in hints.items():
        if abs(value - wrong) < 1e-4:
            raise NotYet(hint)
    raise NotYet(f"`grad_at_2` is {value:.4g}; differentiate x³ - 2x and evaluate at x = 2.")


def _largest_stable_lr(m: torch.Tensor) -> float:
    return 2 / torch.linalg.eigvalsh(2 * m.T @ m / len(m)).max().item()


@check_for("largest_stable_lr", "limit_raw", "limit_scaled")
def _limits(ns: dict) -> str:
    raw, scaled = need(ns, "limit_raw", "limit_scaled")
    X, X_t = lesson_value(ns, "X").double(), lesson_value(ns, "X_t").double()
    for name, got, m in (("limit_raw", raw, X), ("limit_scaled", scaled, X_t)):
        value = as_number(got, f"`{name}`")
        expected = _largest_stable_lr(m)
        if abs(value - expected) <= 1e-3 * expected:
            continue
        curvature = torch.linalg.eigvalsh(2 * m.T @ m / len(m))
        hints = {
            2 * expected: "it is twice too large: the curvature matrix is 2 * X.T @ X / len(X), with the 2.",
            expected / 2: "it is half the limit: the largest stable learning rate is 2 / λ, not 1 / λ.",
            2 / curvature.min().item(): "you used the smallest eigenvalue: the steepest direction, the largest "
            "eigenvalue, sets the limit.",
            expected / len(m): "divide X.T @ X by len(X): the loss is a mean over the points.",
        }
        for wrong, hint in hints.items():
            if abs(value - wrong) <= 1e-3 * abs(wrong):
                raise NotYet(f"`{name}`: {hint}")
        raise NotYet(
            f"`{name}` is {value:.3g}; 2 divided by the largest eigenvalue of the curvature gives another value."
        )
    return "2 / (largest eigenvalue of 2·XᵀX/n), for raw and scaled time."


@check_for("step_without_reset", "apply_step_without_reset")
def _step_without_reset(ns: dict) -> str:
    fn = need_callable(ns, "apply_step_without_reset")
    speed = lesson_value(ns, "speed").detach().float()
    t = torch.linspace(-1.6, 1.6, len(speed))

    def loss_of(p):
        return ((p[0] * t**2 + p[1] * t + p[2] - speed) ** 2).mean()

    start = torch.tensor([2.0, -1.0, 30.0])
    ref, theirs = start.clone().requires_grad_(), start.clone().requires_grad_()
    reset = start.clone().requires_grad_()
    for step in range(1, 4):
        loss_of(ref).backward()
        with torch.no_grad():
            ref -= 0.05 * ref.grad  # the gradient is kept: the next backward() adds to it
        loss_of(reset).backward()
        with torch.no_grad():
            reset -= 0.05 * reset.grad
        reset.grad = None
        before = theirs.detach().clone()
        call(fn, theirs, t, 0.05, what="apply_step_without_reset(params, t, 0.05)")
        got = theirs.detach()
        if torch.equal(got, before):
            raise NotYet(f"step {step} did not move the parameters: subtract lr * params.grad from them.")
        if not torch.allclose(got, ref.detach(), rtol=1e-4, atol=1e-4):
            if torch.allclose(got, reset.detach(), rtol=1e-4, atol=1e-4):
                raise NotYet(
                    f"step {step} moved like apply_step: your step still resets the gradient. Leave "
                    "`params.grad` alone, so that the next backward() adds to it."
                )
            raise NotYet(f"after step {step} the parameters are {got.tolist()}; expected {ref.detach().tolist()}.")
    return "three steps, each against the sum of every gradient so far."


# ------------------------------------------------------------------------------------------ lesson 01
@check_for("train_linear", "train_linear")
def _train_linear(ns: dict) -> str:
    fn = need_callable(ns, "train_linear")
    fast = call(fn, 10.0, epochs=2, seed=3, what="train_linear(10.0, epochs=2, seed=3)")
    if isinstance(fast, torch.Tensor):
        fast = fast.tolist()
    if not isinstance(fast, (list, tuple)) or len(fast) != 2:
        raise NotYet(f"train_linear(10.0, epochs=2) returned {describe(fast)}; expected a list of 2 accuracies.")
    fast = [as_number(a, "each accuracy") for a in fast]
    if not all(0 <= a <= 1 for a in fast):
        raise NotYet(f"train_linear returned {fast}: expected validation accuracies, between 0 and 1.")
    again = [as_number(a, "each accuracy") for a in call(fn, 10.0, epochs=2, seed=3, what="train_linear again")]
    if again != fast:
        raise NotYet(
            "two calls with the same seed gave different accuracies: start each call from fresh weights, "
            "made after `helpers.seed_everything(seed)`."
        )
    slow = [as_number(a, "each accuracy") for a in call(fn, 0.1, epochs=2, seed=3, what="train_linear(0.1)")]
    if slow == fast:
        raise NotYet("lr=0.1 and lr=10 gave the same accuracies: does your function pass its `lr` to the training?")
    if fast[-1] < slow[-1] and fast[-1] < fast[0]:
        raise NotYet(
            "your numbers fall as training goes on, and are lower for the faster rate: return the validation "
            "accuracy after each epoch (validate_epoch), not the loss."
        )
    # measured over seeds 0-9 (tests/test_checks.py): after 2 epochs lr 10 gives 0.966-0.975, lr 0.1 0.47-0.84
    if not (fast[-1] > 0.94 and slow[-1] < 0.9):
        raise NotYet(
            f"after 2 epochs, lr=10 gave {fast[-1]:.4f} and lr=0.1 gave {slow[-1]:.4f}; the lesson's model "
            "gives about 0.97 and 0.66. Train the lesson's linear model (init_params, train_epoch) on `train_x`."
        )
    return "fresh weights from the seed; lr=10 learns in 2 epochs what lr=0.1 does not."


@check_for("epoch_without_reset", "train_epoch_no_reset")
def _epoch_no_reset(ns: dict) -> str:
    fn = need_callable(ns, "train_epoch_no_reset")
    batches = [(torch.randn(8, 784), (torch.rand(8, 1) > 0.5).float()) for _ in range(3)]
    w0, b0 = torch.randn(784, 1) * 0.1, torch.zeros(1)

    def run(reset: bool):
        w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        for xb, yb in batches:
            _mnist_loss(xb @ w + b, yb).backward()
            with torch.no_grad():
                for p in (w, b):
                    p -= 1.0 * p.grad
                    if reset:
                        p.grad = None
        return w.detach(), b.detach()

    ref_w, _ = run(reset=False)
    reset_w, _ = run(reset=True)
    w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
    call(fn, lambda xb: xb @ w + b, batches, 1.0, (w, b), what="train_epoch_no_reset(model, dl, 1.0, (w, b))")
    got = w.detach()
    if torch.equal(got, w0):
        raise NotYet("the weights did not change: step each parameter by `p.grad * lr` after every batch.")
    if torch.allclose(got, reset_w, atol=1e-5):
        raise NotYet("your epoch still resets the gradients: remove `p.grad.zero_()` so that they add up.")
    compare(got, ref_w, "the weights after an epoch of 3 hidden batches", atol=1e-4)
    return "every step moves by the sum of all gradients so far."


@check_for("loader_in_order", "in_order")
def _in_order(ns: dict) -> str:
    loader = need(ns, "in_order")
    train_y = lesson_value(ns, "train_y")

    def labels(dl):
        try:
            return [yb.detach().view(-1).cpu() for _, yb in dl]
        except Exception as e:
            raise NotYet(f"iterating over `in_order` raised {type(e).__name__}: {e}") from None

    first, second = labels(loader), labels(loader)
    sizes = [len(y) for y in first]
    if sizes and sizes[0] != 256:
        raise NotYet(f"`in_order` gives batches of {sizes[0]} images; the lesson's loader uses 256.")
    if sum(sizes) != len(train_y):
        raise NotYet(f"`in_order` gives {sum(sizes)} images in an epoch; the training set has {len(train_y)}.")
    if any(not torch.equal(a, b) for a, b in zip(first, second)):
        raise NotYet("two passes over `in_order` gave different batches: it still shuffles; use shuffle=False.")
    if not torch.equal(torch.cat(first), train_y.detach().view(-1).cpu()):
        raise NotYet("`in_order` is not in the training set's order (all 3s, then all 7s): use shuffle=False.")
    return f"{len(sizes)} batches of 256, the 3s first, the same every epoch."


@check_for("bce_loss", "bce_loss")
def _bce_loss(ns: dict) -> str:
    fn = need_callable(ns, "bce_loss")
    preds, targets = torch.randn(16, 1) * 3, (torch.rand(16, 1) > 0.5).float()
    got = call(fn, preds, targets, what="bce_loss(predictions, targets) on 16 hidden predictions")
    compare(
        got,
        F.binary_cross_entropy_with_logits(preds, targets),
        "bce_loss on 16 hidden predictions",
        {
            "you apply the sigmoid twice: binary_cross_entropy_with_logits takes the raw outputs and applies it "
            "itself.": F.binary_cross_entropy_with_logits(preds.sigmoid(), targets),
            "you sum the losses over the batch: average them (reduction='mean', the default).": (
                F.binary_cross_entropy_with_logits(preds, targets, reduction="sum")
            ),
            "the arguments are swapped: the predictions (logits) come first, then the targets.": (
                F.binary_cross_entropy_with_logits(targets, preds.sigmoid().round())
            ),
        },
    )
    return "equal to binary cross-entropy on the raw outputs."


@check_for("worst_images", "worst")
def _worst(ns: dict) -> str:
    worst = need(ns, "worst")
    weights, bias = lesson_value(ns, "params")
    valid_x, valid_y = lesson_value(ns, "valid_x"), lesson_value(ns, "valid_y")
    with torch.no_grad():
        probs = (valid_x @ weights + bias).sigmoid().view(-1)
    loss = torch.where(valid_y.view(-1) == 1, 1 - probs, probs)
    try:
        got = {int(i) for i in worst}
    except (TypeError, ValueError):
        raise NotYet(f"`worst` should hold 10 image positions (integers), but it is {describe(worst)}.") from None
    if len(got) != 10:
        raise NotYet(f"`worst` holds {len(got)} different positions; expected the 10 largest losses.")
    if got == set(loss.topk(10).indices.tolist()):
        return "the 10 validation images with the largest loss."
    if got == set(loss.topk(10, largest=False).indices.tolist()):
        raise NotYet("these are the 10 images the model gets most right (the smallest loss): take the largest.")
    if got in (set(probs.topk(10).indices.tolist()), set(probs.topk(10, largest=False).indices.tolist())):
        raise NotYet("you ranked the predictions themselves: rank the loss, which depends on the true digit too.")
    raise NotYet("`worst` is not the 10 largest per-image losses of the trained model (`params`) on `valid_x`.")


# ------------------------------------------------------------------------------------------ lesson 02
def optimizer_trace(make, params0: list[torch.Tensor], grads: list[list[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """Parameters after each step of the optimizer `make(params)`, given these gradients at each step."""
    params = [p.clone().requires_grad_() for p in params0]
    opt = make(params)
    trace = []
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()
        opt.zero_grad()
        trace.append([p.detach().clone() for p in params])
    return trace


def compare_traces(got, expected, mistakes: dict[str, list], name: str, atol: float = 1e-6) -> None:
    """NotYet at the first step where `got` leaves `expected`, naming a known mistake it follows."""
    for step, (g, e) in enumerate(zip(got, expected), 1):
        if all(torch.allclose(a, b, atol=atol, rtol=1e-5) for a, b in zip(g, e)):
            continue
        for hint, trace in mistakes.items():
            if all(torch.allclose(a, b, atol=atol, rtol=1e-5) for gs, ts in zip(got, trace) for a, b in zip(gs, ts)):
                raise NotYet(hint)
        diff = max((a - b).abs().max().item() for a, b in zip(g, e))
        raise NotYet(
            f"{name} agrees with the reference until step {step - 1}; at step {step} a parameter is off by {diff:.3g}."
        )


def hand_trace(params, grads, update) -> list[list[torch.Tensor]]:
    """Parameters after each step of a hand-written rule `update(p, g, state, step)` (a known mistake)."""
    ps = [p.clone() for p in params]
    states: list[dict] = [{} for _ in ps]
    out = []
    for step, gs in enumerate(grads, 1):
        for p, g, st in zip(ps, gs, states):
            update(p, g, st, step)
        out.append([p.clone() for p in ps])
    return out


def _momentum_rule(lr: float, mom: float, dampening: float = 0.0, use_v: bool = True):
    def update(p, g, st, step):
        st["v"] = mom * st.get("v", torch.zeros_like(p)) + (1 - dampening) * g
        p.sub_(lr * (st["v"] if use_v else g))

    return update


def _hidden_params(n_steps: int = 4):
    params = [torch.randn(3, 4), torch.randn(4)]
    grads = [[torch.randn_like(p) for p in params] for _ in range(n_steps)]
    return params, grads


@check_for("momentum_optim", "MomentumOptim")
def _momentum(ns: dict) -> str:
    cls = need_callable(ns, "MomentumOptim")
    params, grads = _hidden_params()
    got = call(optimizer_trace, lambda ps: cls(ps, lr=0.1), params, grads, what="MomentumOptim(params, lr=0.1)")
    expected = optimizer_trace(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), params, grads)
    compare_traces(
        got,
        expected,
        {
            "your velocity is an average, v = 0.9·v + 0.1·grad: keep the plain sum, v = 0.9·v + grad.": hand_trace(
                params, grads, _momentum_rule(0.1, 0.9, dampening=0.9)
            ),
            "it steps by lr·grad, as plain SGD: step by lr·v, with v kept from one step to the next.": hand_trace(
                params, grads, _momentum_rule(0.1, 0.9, use_v=False)
            ),
            "that is Nesterov's momentum: step by lr·v, with v = 0.9·v + grad.": optimizer_trace(
                lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True), params, grads
            ),
        },
        "MomentumOptim",
    )
    return "four steps equal to torch.optim.SGD(momentum=0.9)."


@check_for("zeroing_optim", "ZeroingOptim")
def _zeroing(ns: dict) -> str:
    cls = need_callable(ns, "ZeroingOptim")
    p = torch.randn(5, requires_grad=True)
    before = p.detach().clone()
    p.grad = torch.ones(5)
    opt = call(cls, [p], 0.5, what="ZeroingOptim([p], lr=0.5)")
    call(opt.zero_grad, what="zero_grad()")
    if not torch.equal(p.detach(), before):
        raise NotYet("zero_grad changed the parameters: zero their gradients (`p.grad.zero_()`), not `p.data`.")
    if p.grad is None:
        raise NotYet("zero_grad sets the gradients to None, as BasicOptim does: fill them with zeros instead.")
    if not torch.equal(p.grad, torch.zeros(5)):
        raise NotYet("after zero_grad the gradients are not zero: call `p.grad.zero_()` on every parameter.")
    p.grad = torch.full((5,), 2.0)
    call(opt.step, what="step()")
    compare(p.detach(), before - 1.0, "the parameters after one step with lr=0.5 and gradient 2")
    return "zero_grad fills the gradients with zeros; step is BasicOptim's."


@check_for("sequential_model", "seq_model")
def _seq_model(ns: dict) -> str:
    model = need(ns, "seq_model")
    if not isinstance(model, nn.Sequential):
        raise NotYet(f"`seq_model` is {describe(model)}; build it with nn.Sequential(nn.Linear(784, 1)).")
    layers = list(model)
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if len(layers) != 1 or len(linears) != 1:
        kinds = ", ".join(type(m).__name__ for m in layers) or "nothing"
        raise NotYet(f"`seq_model` holds {kinds}; the exercise asks for one layer, nn.Linear(784, 1).")
    lin = linears[0]
    if (lin.in_features, lin.out_features) != (784, 1):
        raise NotYet(
            f"the layer maps {lin.in_features} inputs to {lin.out_features} outputs; expected 784 pixels to 1 score."
        )
    return "nn.Sequential around one nn.Linear(784, 1)."


@check_for("first_epoch_at_target", "first")
def _first(ns: dict) -> str:
    first, adam = need(ns, "first"), need(ns, "adam")
    accs = accuracies_per_epoch(adam, "adam", 20, "train for 20 epochs")
    expected = next((i + 1 for i, a in enumerate(accs) if a >= 0.979), None)
    if expected is None:
        raise NotYet("no epoch of `adam` reached 0.979: check the learning rate (1e-2) and the optimizer.")
    if first == expected:
        return "the first epoch at 97.9% or more, counting from 1."
    if first == expected - 1:
        raise NotYet("off by one: epochs count from 1, but Python's positions from 0. Add 1 to the position.")
    if first == sum(a >= 0.979 for a in accs):
        raise NotYet("that is how many epochs reached 0.979, not the first one that did.")
    raise NotYet(f"`first` is {first!r}; the first epoch (from 1) of `adam` at 0.979 or more is another.")
