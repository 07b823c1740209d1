"""Sick (degenerate-targets): a label pipeline bug makes every target class 0."""

import torch
from torch import nn


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 5))


def make_batch(batch_size: int):
    return torch.randn(batch_size, 20), torch.zeros(batch_size, dtype=torch.long)
