"""What lesson 04 builds (helpers.mnist): the two models, the update steps, predictions and accuracy
over a whole set, on small known inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from helpers import mnist


def test_models_shapes_and_parameter_counts():
    x = torch.rand(5, 784)
    for model, n in ((mnist.Mnist_Logistic(), 7_850), (mnist.Mnist_NN(), 39_760)):
        assert model(x).shape == (5, 10) and sum(p.numel() for p in model.parameters()) == n


def test_update_with_wd_is_sgd_on_the_loss_plus_the_squared_weights():
    torch.manual_seed(0)
    a, b = mnist.Mnist_Logistic(), mnist.Mnist_Logistic()
    b.load_state_dict(a.state_dict())
    x, y = torch.rand(16, 784), torch.randint(0, 10, (16,))
    loss_func = nn.CrossEntropyLoss()
    got = mnist.update_with_wd(a, loss_func, x, y, lr=0.1, wd=0.01)
    expected = loss_func(b(x), y) + 0.01 * sum((p**2).sum() for p in b.parameters())
    expected.backward()
    assert got == pytest.approx(expected.item())
    with torch.no_grad():
        assert all(torch.allclose(p, q - 0.1 * q.grad, atol=1e-6) for p, q in zip(a.parameters(), b.parameters()))
    assert all(torch.count_nonzero(p.grad) == 0 for p in a.parameters())  # reset for the next step


@pytest.mark.parametrize("changed", [{"lr": 0.2}, {"wd": 0.5}], ids=str)
def test_each_argument_of_update_with_wd_changes_the_step(changed):
    def after(lr=0.1, wd=0.01):
        torch.manual_seed(0)
        model = mnist.Mnist_NN()
        mnist.update_with_wd(model, nn.CrossEntropyLoss(), torch.rand(8, 784), torch.zeros(8, dtype=torch.long), lr, wd)
        return torch.cat([p.detach().view(-1) for p in model.parameters()])

    assert (after() - after(**changed)).abs().max() > 1e-6


def test_update_with_optimizer_keeps_the_optimizer_it_is_given():
    torch.manual_seed(0)
    model = mnist.Mnist_NN()
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    x, y = torch.rand(8, 784), torch.zeros(8, dtype=torch.long)
    for _ in range(3):
        mnist.update_with_optimizer(model, nn.CrossEntropyLoss(), x, y, opt)
    assert {int(s["step"]) for s in opt.state.values()} == {3} and all(p.grad is None for p in model.parameters())


def test_predict_all_and_accuracy_over_batches():
    model = nn.Linear(784, 10)
    x = torch.rand(10_000, 784)
    preds = mnist.predict_all(model, x, bs=4096)  # three batches, the last one short
    with torch.no_grad():
        assert torch.equal(preds, model(x).argmax(1))
    y = preds.clone()
    y[:2500] = (y[:2500] + 1) % 10
    assert mnist.accuracy_on(model, x, y) == pytest.approx(0.75)
