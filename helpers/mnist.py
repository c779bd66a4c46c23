"""What lesson 04 builds for full MNIST: the two models and the hand-written update steps."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Mnist_Logistic", "Mnist_NN", "update_with_wd", "update_with_optimizer", "accuracy", "predict_all"]


class Mnist_Logistic(nn.Module):
    """Multinomial logistic regression: one linear layer from 784 pixels to 10 class scores."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(784, 10, bias=True)

    def forward(self, xb: Tensor) -> Tensor:
        return self.lin(xb)


class Mnist_NN(nn.Module):
    """784 -> 50 -> ReLU -> 10: the smallest neural network of the course for ten digits."""

    def __init__(self):
        super().__init__()
        self.lin1 = nn.Linear(784, 50, bias=True)
        self.lin2 = nn.Linear(50, 10, bias=True)

    def forward(self, xb: Tensor) -> Tensor:
        return self.lin2(F.relu(self.lin1(xb)))


def update_with_wd(model: nn.Module, loss_func: Callable, xb: Tensor, yb: Tensor, lr: float, wd: float) -> float:
    """One SGD step on `loss + wd * (sum of squared parameters)`; returns that loss."""
    w2 = sum((p**2).sum() for p in model.parameters())
    loss = loss_func(model(xb), yb) + wd * w2
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
            p.grad.zero_()
    return loss.item()


def update_with_optimizer(
    model: nn.Module, loss_func: Callable, xb: Tensor, yb: Tensor, opt: torch.optim.Optimizer
) -> float:
    """One step of any optimizer that lives across steps (created once, outside this function)."""
    loss = loss_func(model(xb), yb)
    loss.backward()
    opt.step()
    opt.zero_grad()
    return loss.item()


@torch.no_grad()
def predict_all(model: nn.Module, x: Tensor, batch_size: int = 4096) -> Tensor:
    """The predicted class of every row of `x`."""
    return torch.cat([model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Share of `x` whose predicted class is `y`, over the whole set."""
    return (predict_all(model, x) == y).float().mean().item()
