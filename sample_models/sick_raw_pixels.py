"""Sick (input-scale): a CNN fed raw 0..255 pixel values instead of normalised ones."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 10),
    )


def make_batch(batch_size: int):
    x, y = teacher_classification(batch_size, (3, 16, 16), 10)
    pixels = torch.randint(0, 256, x.shape).float()  # the forgotten `/ 255` and normalisation
    return pixels, y
