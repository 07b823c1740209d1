"""Sick (exploding-gradients, init-scale): 12 ReLU layers with weights 2.5x the He scale."""

import math

import torch
from torch import nn

from nndiag.synthetic import teacher_classification

DEPTH, WIDTH = 12, 64


def build_model() -> nn.Module:
    layers: list[nn.Module] = []
    width_in = 20
    for _ in range(DEPTH):
        linear = nn.Linear(width_in, WIDTH)
        with torch.no_grad():
            linear.weight.normal_(0.0, 2.5 * math.sqrt(2.0 / width_in))
            linear.bias.zero_()
        layers += [linear, nn.ReLU()]
        width_in = WIDTH
    return nn.Sequential(*layers, nn.Linear(WIDTH, 5))


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 5)
