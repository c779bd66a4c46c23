"""Checks of lessons 03-04: a network with fastai's Learner, and full MNIST. None imports fastai: they
read what the learner computed, and the lesson's own objects, from the notebook."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import (
    NotYet,
    accuracies_per_epoch,
    as_tensor,
    call,
    check_for,
    compare,
    describe,
    lesson_value,
    need,
    need_callable,
)


def _as_dict(value, name: str) -> dict:
    if not isinstance(value, dict):
        raise NotYet(f"`{name}` should be a dict, but it is {describe(value)}.")
    return value


def _numbers(d: dict, name: str) -> dict:
    try:
        return {k: float(v) for k, v in d.items()}
    except (TypeError, ValueError):
        raise NotYet(f"the values of `{name}` should be numbers.") from None


def _keys(d: dict, expected: list, name: str) -> None:
    if sorted(d, key=str) != sorted(expected, key=str):
        raise NotYet(f"`{name}` has the keys {sorted(d, key=str)}; expected {expected}.")


# ------------------------------------------------------------------------------------------ lesson 03
@check_for("make_net", "make_net", "book")
def _make_net(ns: dict) -> str:
    make = need_callable(ns, "make_net")
    book = need(ns, "book")
    net = call(make, 17, what="make_net(17)")
    layers = list(net) if isinstance(net, nn.Sequential) else None
    if layers is None:
        raise NotYet(f"make_net(17) returned {describe(net)}; build an nn.Sequential.")
    kinds = [type(m).__name__ for m in layers]
    linears = [m for m in layers if isinstance(m, nn.Linear)]
    if kinds == ["Linear", "Linear"]:
        raise NotYet("there is no ReLU between the two layers: two linear layers make one linear layer.")
    if kinds != ["Linear", "ReLU", "Linear"]:
        raise NotYet(f"make_net(17) holds {', '.join(kinds)}; expected Linear, ReLU, Linear.")
    if linears[0].out_features != 17:
        raise NotYet(f"make_net(17) has {linears[0].out_features} hidden units: use the argument `hidden`.")
    if (linears[0].in_features, linears[1].out_features) != (784, 1):
        raise NotYet(
            f"make_net maps {linears[0].in_features} inputs to {linears[1].out_features} outputs; expected 784 to 1."
        )
    accs = accuracies_per_epoch(book, "book", 40, "train simple_net for 40 epochs")
    # the lesson's checkpoint: at least 0.98 after 40 epochs at lr 0.1 (benchmarks/SPREAD.md)
    if accs[-1] < 0.98:
        raise NotYet(f"after 40 epochs `book` ends at {accs[-1]:.4f}; at lr=0.1 it gets to 0.98 or more.")
    return "Linear, ReLU, Linear; after 40 epochs at lr=0.1, 0.98 or more."


@check_for("collapse_two_linear", "w_one", "b_one")
def _collapse(ns: dict) -> str:
    w, b = need(ns, "w_one", "b_one")
    model = lesson_value(ns, "learn_lin2").model
    first, second = model[0], model[1]
    with torch.no_grad():
        w_ref = (second.weight @ first.weight).cpu()
        b_ref = (second.weight @ first.bias + second.bias).cpu()
    compare(
        as_tensor(w, "`w_one`"),
        w_ref,
        "`w_one`",
        {"`w_one` is transposed: the single layer's weight is W2 @ W1, of shape [1, 784].": w_ref.T},
    )
    compare(
        as_tensor(b, "`b_one`"),
        b_ref,
        "`b_one`",
        {
            "the first layer's bias also goes through the second layer: b = W2 @ b1 + b2.": second.bias.detach().cpu(),
            "you forgot the second layer's own bias: b = W2 @ b1 + b2.": (second.weight @ first.bias).detach().cpu(),
        },
        atol=1e-4,
    )
    return "one weight per pixel and one bias: the two layers are one linear layer."


@check_for("hidden_sizes", "sizes", "final")
def _sizes(ns: dict) -> str:
    sizes, final = need(ns, "sizes", "final")
    sizes, final = _as_dict(sizes, "sizes"), _as_dict(final, "final")
    _keys(sizes, [10, 30, 100], "sizes")
    _keys(final, [10, 30, 100], "final")
    for h in (10, 30, 100):
        got, expected = sizes[h], 784 * h + h + h + 1
        if got == expected:
            continue
        if got == 784 * h + h:
            raise NotYet(f"sizes[{h}] counts the weights but not the biases: a layer has one bias per output.")
        if got == 784 * h + h + h:
            raise NotYet(f"sizes[{h}] misses the last layer's bias.")
        raise NotYet(f"sizes[{h}] is {got}; make_net({h}) has {expected} parameters (sum of p.numel()).")
    accs = _numbers(final, "final")
    if not all(0.975 <= a <= 1 for a in accs.values()):
        raise NotYet(f"`final` holds {accs}: each should be a validation accuracy after 10 epochs at lr=1.0 (≥ 0.975).")
    return "parameters counted with their biases; three networks within a point of accuracy."


@check_for("loss_columns", "train_losses", "valid_losses")
def _loss_columns(ns: dict) -> str:
    train, valid = need(ns, "train_losses", "valid_losses")
    values = torch.tensor([[float(x) for x in row] for row in lesson_value(ns, "learn_nn").recorder.values])
    t, v = as_tensor(list(train), "`train_losses`"), as_tensor(list(valid), "`valid_losses`")
    if torch.allclose(t, values[:, 1]) and torch.allclose(v, values[:, 0]):
        raise NotYet("you swapped them: column 0 of each row is the training loss, column 1 the validation loss.")
    compare(t, values[:, 0], "`train_losses`")
    compare(
        v,
        values[:, 1],
        "`valid_losses`",
        {"that is column 2, the accuracy: the validation loss is column 1.": values[:, 2]},
    )
    return "columns 0 and 1 of recorder.values, one value per epoch."


@check_for("to_words", "to_words")
def _to_words(ns: dict) -> str:
    fn = need_callable(ns, "to_words")
    outputs = torch.tensor([[2.5], [-0.3], [0.2], [-4.0], [0.7], [-0.01], [1.2], [0.4]])
    got = call(fn, outputs, what="to_words(outputs) for 8 hidden outputs")
    try:
        got = list(got)
    except TypeError:
        raise NotYet(f"to_words returned {describe(got)}; expected a list of words.") from None
    expected = ["3" if o > 0 else "7" for o in outputs.view(-1)]
    if got == expected:
        return 'an output above 0 is a "3", below 0 a "7".'
    if len(got) != len(expected):
        raise NotYet(f"to_words gave {len(got)} words for {len(expected)} outputs.")
    if [str(w) for w in got] == [("3" if o > 0 else "7") for o in outputs.view(-1)]:
        raise NotYet('return the words "3" and "7" as strings, not numbers.')
    if got == ["3" if o > 0.5 else "7" for o in outputs.view(-1)]:
        raise NotYet("the outputs come before the sigmoid: their threshold is 0, not 0.5.")
    if got == ["7" if o > 0 else "3" for o in outputs.view(-1)]:
        raise NotYet('swapped: an output above 0 means "3" (the target 1), below 0 "7".')
    i = next(i for i, (a, b) in enumerate(zip(got, expected)) if a != b)
    raise NotYet(f"for the output {outputs[i].item():.2f} you say {got[i]!r}; expected {expected[i]!r}.")


# ------------------------------------------------------------------------------------------ lesson 04
@check_for("weight_decay_effect", "sizes", "accs")
def _weight_decay(ns: dict) -> str:
    sizes, accs = need(ns, "sizes", "accs")
    sizes, accs = _numbers(_as_dict(sizes, "sizes"), "sizes"), _numbers(_as_dict(accs, "accs"), "accs")
    _keys(sizes, [0.0, 0.01], "sizes")
    _keys(accs, [0.0, 0.01], "accs")
    if any(v > 1 for v in sizes.values()):
        raise NotYet(f"`sizes` holds {sizes}: measure a model's weights by their mean size, w.abs().mean().")
    if sizes[0.0] == sizes[0.01]:
        raise NotYet("the two runs gave the same weights: pass the decay to the update (wd=decay).")
    # the lesson's checkpoint: at least 10% smaller with wd=1e-2, accuracy within a point
    if sizes[0.01] >= 0.9 * sizes[0.0]:
        raise NotYet(
            f"with wd=1e-2 the weights are {sizes[0.01]:.4f} against {sizes[0.0]:.4f} without: they should come "
            "out at least 10% smaller. Is the decay subtracted (weights shrink towards 0)?"
        )
    if not all(0.8 < a <= 1 for a in accs.values()) or abs(accs[0.01] - accs[0.0]) > 0.01:
        raise NotYet(f"`accs` holds {accs}: expected two validation accuracies of one epoch, within a point.")
    return "weight decay shrinks the weights for about the same accuracy."


@check_for("adam_state", "update_passing_state")
def _adam_state(ns: dict) -> str:
    fn = need_callable(ns, "update_passing_state")
    torch.manual_seed(1)
    start = nn.Linear(4, 3)
    xs = [torch.randn(8, 4) for _ in range(3)]
    ys = [torch.randint(0, 3, (8,)) for _ in range(3)]
    loss_func = ns.get("loss_func", F.cross_entropy)

    def reference(fresh_each_batch: bool):
        m = nn.Linear(4, 3)
        m.load_state_dict(start.state_dict())
        opt = torch.optim.Adam(m.parameters(), 1e-2)
        out = []
        for x, y in zip(xs, ys):
            if fresh_each_batch:
                opt = torch.optim.Adam(m.parameters(), 1e-2)
            F.cross_entropy(m(x), y).backward()
            opt.step()
            opt.zero_grad()
            out.append(m.weight.detach().clone())
        return out

    once, fresh = reference(False), reference(True)
    m = nn.Linear(4, 3)
    m.load_state_dict(start.state_dict())
    state = None
    with _swap_global(fn, "loss_func", loss_func):
        for step, (x, y) in enumerate(zip(xs, ys), 1):
            state = call(fn, m, x, y, 1e-2, state, what="update_passing_state(model, x, y, 1e-2, state)")
            got = m.weight.detach()
            if torch.allclose(got, once[step - 1], atol=1e-6):
                if state is None and step < len(xs):
                    raise NotYet("update_passing_state returned None: return opt.state_dict() for the next call.")
                continue
            if torch.allclose(got, fresh[step - 1], atol=1e-6):
                raise NotYet(
                    f"at step {step} your Adam started afresh: load the state you were given "
                    "(opt.load_state_dict(state)) before stepping, and return the new one."
                )
            raise NotYet(f"at step {step} the weights differ from one Adam kept across the batches.")
    return "three steps equal to one Adam created once."


class _swap_global:
    def __init__(self, fn, name, value):
        self.g, self.name, self.value = getattr(fn, "__globals__", {}), name, value

    def __enter__(self):
        self.had, self.old = self.name in self.g, self.g.get(self.name)
        if not self.had:
            self.g[self.name] = self.value

    def __exit__(self, *exc):
        if not self.had:
            self.g.pop(self.name, None)


@check_for("one_cycle_rates", "by_lr")
def _by_lr(ns: dict) -> str:
    by_lr = _as_dict(need(ns, "by_lr"), "by_lr")
    if any(isinstance(k, str) for k in by_lr):
        raise NotYet("the keys of `by_lr` should be the learning rates themselves (numbers), not text.")
    accs = _numbers(by_lr, "by_lr")
    _keys(accs, [1e-3, 3e-3, 1e-2, 3e-2], "by_lr")
    if all(a < 0.5 for a in accs.values()):
        raise NotYet(
            "these look like losses: recorder.values[-1] is [train_loss, valid_loss, accuracy]; take column 2."
        )
    # the lesson's checkpoint (measured over seeds and CPUs): 1e-3 is the worst, a larger rate the best
    if min(accs, key=accs.get) != 1e-3:
        raise NotYet(f"in `by_lr` = {accs}, 1e-3 should be the worst: did each run start from fresh weights?")
    return "the smallest rate, 1e-3, is the worst; a larger one is the best."


@check_for("seed_spread", "by_seed")
def _by_seed(ns: dict) -> str:
    by_seed = _numbers(_as_dict(need(ns, "by_seed"), "by_seed"), "by_seed")
    _keys(by_seed, [0, 1, 2, 3], "by_seed")
    values = list(by_seed.values())
    if any(v > 1 for v in values):
        raise NotYet("give the accuracies as fractions (0.92), not percentages.")
    if len(set(values)) == 1:
        raise NotYet(
            "every seed gave the same accuracy: seed inside the loop with the loop's seed "
            "(helpers.seed_everything(seed)), and seed the loader's generator with it too."
        )
    # the lesson's checkpoint: four seeds spread over more than 0.002 (benchmarks/SPREAD.md)
    if max(values) - min(values) <= 0.002:
        raise NotYet(f"the four accuracies spread over {max(values) - min(values):.4f}; seeds alone move it more.")
    return "four seeds spread over more than 0.002: as much as many settings change."


@check_for("confusion_matrix", "confusion")
def _confusion(ns: dict) -> str:
    confusion = as_tensor(need(ns, "confusion"), "`confusion`")
    y, preds = lesson_value(ns, "y_test").cpu(), lesson_value(ns, "test_preds").cpu()
    expected = torch.zeros(10, 10)
    expected.index_put_((y, preds), torch.ones(len(y)), accumulate=True)
    compare(
        confusion,
        expected,
        "`confusion`",
        {
            "rows should be the true digits and columns the predictions: yours is transposed.": expected.T,
            "you removed the diagonal: keep the right predictions on it (they show how many are right).": expected
            - torch.diag(expected.diag()),
        },
    )
    return "rows are the true digits, columns the predictions."
