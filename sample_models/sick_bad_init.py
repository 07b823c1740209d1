"""Sick (init-scale): weights drawn from torch.randn without the 1/sqrt(fan_in) scaling."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


class RawInitMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w1 = nn.Linear(20, 256)
        self.w2 = nn.Linear(256, 5)
        with torch.no_grad():
            self.w1.weight.copy_(torch.randn(256, 20) * 0.2)
            self.w2.weight.copy_(torch.randn(5, 256))  # std 1: std·sqrt(fan_in) = 16

    def forward(self, x):
        return self.w2(torch.relu(self.w1(x)))


def build_model() -> nn.Module:
    return RawInitMLP()


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 5)
