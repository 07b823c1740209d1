"""Sick: a normalisation layer created inside forward. It gets new weights on every call, never
trains, and two eval-mode calls on the same batch disagree."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(20, 64)
        self.out = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.inp(x))
        h = nn.Linear(64, 64)(h)  # bug: built here, so a fresh random layer on every call
        return self.out(torch.relu(h))


def build_model() -> nn.Module:
    return Net()


def make_batch(batch_size: int = 16):
    return teacher_classification(batch_size, (20,), 5)
