"""Healthy model, unlearnable data: a small CNN with BatchNorm on images whose labels are drawn
at random on every call (no rule links inputs to labels)."""

import torch
from torch import nn


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip


def make_batch(batch_size: int = 16):
    return torch.randn(batch_size, 3, 16, 16), torch.randint(0, 10, (batch_size,))
