"""What a lesson builds by hand and what `helpers` provides give the same results on the same inputs.

Each test takes the cell that defines a function in a lesson notebook, runs just that cell in a
namespace holding what the function uses, and compares it with the helper.
"""

from __future__ import annotations

import ast
import inspect
import json

import torch
from torch import nn

from helpers import sgd
from tools import classroom

NOTEBOOKS = classroom.NOTEBOOKS


def from_lesson(notebook: str, name: str, **namespace):
    """The function or class `name` as a lesson defines it: only its definition is run (not the rest
    of its cell), in a namespace holding torch, nn and `namespace`."""
    nb = json.loads((NOTEBOOKS / notebook).read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        tree = ast.parse("".join(cell["source"]))
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                ns = {"torch": torch, "nn": nn, **namespace}
                exec(compile(ast.Module([node], type_ignores=[]), f"{notebook}:{name}", "exec"), ns)
                return ns[name]
    raise LookupError(f"{notebook} defines no {name}")


L00, L01, L02 = (classroom.lesson(n).name for n in ("00", "01", "02"))


def data(n=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 784, generator=g)
    y = (torch.rand(n, 1, generator=g) > 0.5).float()
    return x, y


def test_mnist_distance_and_is_3():
    imgs, m3, m7 = torch.rand(9, 28, 28), torch.rand(28, 28), torch.rand(28, 28)
    dist = from_lesson(L00, "mnist_distance")
    assert torch.equal(dist(imgs, m3), sgd.mnist_distance(imgs, m3))
    is_3 = from_lesson(L00, "is_3", mnist_distance=dist, mean3=m3, mean7=m7)
    assert torch.equal(is_3(imgs), sgd.is_3(imgs, m3, m7))


def test_mnist_loss_and_batch_accuracy():
    x, y = data()
    preds = torch.randn(len(x), 1) * 3
    assert torch.allclose(from_lesson(L01, "mnist_loss")(preds, y), sgd.mnist_loss(preds, y))
    assert torch.equal(from_lesson(L01, "batch_accuracy")(preds, y), sgd.batch_accuracy(preds, y))


def test_init_params():
    torch.manual_seed(0)
    ours = from_lesson(L01, "init_params", device="cpu")((784, 1))
    torch.manual_seed(0)
    assert torch.equal(ours, sgd.init_params((784, 1)))


def lesson01_loop(x, y, vx, vy, lr, epochs):
    """Train with lesson 01's hand-made functions, then with the helpers, from the same start."""
    dl, valid_dl = sgd.tensor_loader(x, y, 64), sgd.tensor_loader(vx, vy, 64)
    torch.manual_seed(1)
    w0, b0 = torch.randn(784, 1), torch.randn(1)
    results = []
    for use_lesson in (True, False):
        w, b = w0.clone().requires_grad_(), b0.clone().requires_grad_()
        model = lambda xb: xb @ w + b  # noqa: E731
        if use_lesson:
            loss = from_lesson(L01, "mnist_loss")
            calc_grad = from_lesson(L01, "calc_grad", mnist_loss=loss)
            train_epoch = from_lesson(L01, "train_epoch", calc_grad=calc_grad, dl=dl)
            validate = from_lesson(
                L01, "validate_epoch", batch_accuracy=from_lesson(L01, "batch_accuracy"), valid_dl=valid_dl, valid_x=vx
            )
            for _ in range(epochs):
                train_epoch(model, lr, (w, b))
            results.append((validate(model), w.detach().clone()))
        else:
            for _ in range(epochs):
                sgd.train_epoch(model, dl, lr, (w, b))
            results.append((sgd.validate_epoch(model, valid_dl), w.detach().clone()))
    return results


def test_lesson01_training_loop_matches_helpers():
    x, y = data(320)
    vx, vy = data(130, seed=1)  # 130 = 2 full batches + a short one: the weighting matters
    (acc_a, w_a), (acc_b, w_b) = lesson01_loop(x, y, vx, vy, lr=1.0, epochs=3)
    assert acc_a == acc_b and torch.allclose(w_a, w_b, atol=1e-6)


def test_basic_optim_and_train_model_of_lesson02():
    x, y = data(256)
    vx, vy = data(100, seed=3)
    BasicOptim = from_lesson(L02, "BasicOptim")
    train_epoch = from_lesson(L02, "train_epoch", mnist_loss=sgd.mnist_loss)
    valid_dl = sgd.tensor_loader(vx, vy, 64)
    loader = lambda seed=42: sgd.tensor_loader(x, y, 32, shuffle=True, generator=torch.Generator().manual_seed(seed))  # noqa: E731
    train_model = from_lesson(
        L02,
        "train_model",
        train_epoch=train_epoch,
        train_loader=loader,
        validate_epoch=sgd.validate_epoch,
        valid_dl=valid_dl,
    )
    torch.manual_seed(0)
    a = nn.Linear(784, 1)
    b = nn.Linear(784, 1)
    b.load_state_dict(a.state_dict())
    assert list(inspect.signature(train_model).parameters) == list(inspect.signature(sgd.train_model).parameters)
    ours = train_model(a, 3, loader(), valid_dl, BasicOptim(a.parameters(), lr=1.0))
    theirs = sgd.train_model(b, 3, loader(), valid_dl, sgd.BasicOptim(b.parameters(), lr=1.0))
    assert ours == theirs
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))


L04 = classroom.lesson("04").name


def test_lesson04_models_match_helpers():
    from helpers import mnist

    F = torch.nn.functional
    for name in ("Mnist_Logistic", "Mnist_NN"):
        ours = from_lesson(L04, name, F=F)
        torch.manual_seed(0)
        a = ours()
        torch.manual_seed(0)
        b = getattr(mnist, name)()
        assert repr(a).split("(", 1)[1] == repr(b).split("(", 1)[1]
        x = torch.rand(5, 784)
        assert torch.equal(a(x), b(x))


def test_lesson04_update_steps_match_helpers():
    from helpers import mnist

    x, y = torch.rand(64, 784), torch.randint(0, 10, (64,))
    loss_func = nn.CrossEntropyLoss()
    torch.manual_seed(0)
    a, b = mnist.Mnist_NN(), mnist.Mnist_NN()
    b.load_state_dict(a.state_dict())
    update = from_lesson(L04, "update", model=a, loss_func=loss_func, wd=1e-3)
    for _ in range(3):
        la = update(x, y, 0.1)
        lb = mnist.update_with_wd(b, loss_func, x, y, 0.1, 1e-3)
        assert abs(la - lb) < 1e-6
    assert all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))

    ours = from_lesson(L04, "update_with_optimizer")
    assert list(inspect.signature(ours).parameters) == list(inspect.signature(mnist.update_with_optimizer).parameters)
    oa, ob = torch.optim.Adam(a.parameters(), 1e-3), torch.optim.Adam(b.parameters(), 1e-3)
    for _ in range(3):
        assert ours(a, loss_func, x, y, oa) == mnist.update_with_optimizer(b, loss_func, x, y, ob)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
