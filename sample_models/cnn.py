"""Healthy: a small CNN with BatchNorm on standardised 3x16x16 images, 10 classes."""

from torch import nn

from nndiag.synthetic import teacher_classification


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (3, 16, 16), 10)
