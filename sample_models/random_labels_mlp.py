"""Healthy model, unlearnable data: labels drawn at random on every call of make_batch.

The model is fine (it memorises any one batch), but on fresh batches the loss cannot fall below
chance: the LR range test reports `unlearnable-data` (info) and still suggests an LR.
"""

import torch
from torch import nn


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5)
    )


def make_batch(batch_size: int = 16):
    return torch.randn(batch_size, 20), torch.randint(0, 5, (batch_size,))
