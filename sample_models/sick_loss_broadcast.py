"""Sick (loss-broadcast): outputs of shape (B, 1) against targets of shape (B,) in an MSE loss."""

import torch
from torch import nn


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))


def make_batch(batch_size: int):
    x = torch.randn(batch_size, 8)
    return x, x.sum(dim=1)  # (B,): broadcasts against the (B, 1) output to (B, B)


def loss_fn(outputs, targets):
    return ((outputs - targets) ** 2).mean()
