"""Sick (output-ignores-input): forward() feeds a learned constant instead of its argument."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


class Forgetful(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.start = nn.Parameter(torch.randn(1, 20))
        self.net = nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5))

    def forward(self, x):
        return self.net(self.start.expand(x.shape[0], -1))  # bug: should be self.net(x)


def build_model() -> nn.Module:
    return Forgetful()


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 5)
