"""Sick (saturated-units): tanh layers with weights 8x the Glorot scale sit at ±1."""

import math

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


def build_model() -> nn.Module:
    model = nn.Sequential(
        nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 5)
    )
    with torch.no_grad():
        for layer in (model[0], model[2]):
            layer.weight.normal_(0.0, 8.0 / math.sqrt(layer.in_features))
    return model


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 5)
