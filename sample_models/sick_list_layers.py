"""Sick: hidden layers kept in a plain Python list instead of nn.ModuleList. Their weights are
invisible to model.parameters(): the optimizer never updates them and .to(device) never moves
them (reconstructed from PyTorch's issue tracker, e.g. #666)."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(20, 64)
        self.hidden = [nn.Linear(64, 64) for _ in range(3)]  # bug: use nn.ModuleList
        self.out = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return self.out(h)


def build_model() -> nn.Module:
    return Net()


def make_batch(batch_size: int = 16):
    return teacher_classification(batch_size, (20,), 5)
