"""Sick (nonfinite-values): a log of a signed feature produces NaN inside the model."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


class LogFeatures(nn.Module):
    def forward(self, x):
        return torch.log(x)  # NaN for every negative input


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 32), LogFeatures(), nn.Linear(32, 5))


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 5)
