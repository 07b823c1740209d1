"""Sick (vanishing-gradients): 16 sigmoid layers; each backward step multiplies by at most 1/4."""

from torch import nn

from nndiag.synthetic import teacher_classification

DEPTH, WIDTH = 16, 64


def build_model() -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(20, WIDTH), nn.Sigmoid()]
    for _ in range(DEPTH - 1):
        layers += [nn.Linear(WIDTH, WIDTH), nn.Sigmoid()]
    return nn.Sequential(*layers, nn.Linear(WIDTH, 5))


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 5)
