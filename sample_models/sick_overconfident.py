"""Sick (loss-at-init): the output layer starts 20x too large, so logits are overconfident."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


def build_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 27))
    with torch.no_grad():
        model[2].weight.mul_(20.0)
    return model


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 27)
