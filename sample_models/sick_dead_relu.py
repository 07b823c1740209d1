"""Sick (dead-units): a hidden layer's bias is initialised to -10, so its ReLUs never fire."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


def build_model() -> nn.Module:
    model = nn.Sequential(
        nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5)
    )
    with torch.no_grad():
        model[2].bias.fill_(-10.0)
    return model


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 5)
