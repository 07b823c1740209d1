"""Healthy: a model that keeps running input statistics in a buffer on purpose (updated in
training only, like BatchNorm's), and normalises with them: eval-mode calls agree."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


class RunningNormalise(nn.Module):
    def __init__(self, features: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(features))
        self.register_buffer("calls", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.mean.lerp_(x.mean(dim=0), self.momentum)
                self.calls += 1
        return x - self.mean


def build_model() -> nn.Module:
    return nn.Sequential(RunningNormalise(20), nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))


def make_batch(batch_size: int = 16):
    return teacher_classification(batch_size, (20,), 5)
