"""Healthy: a 3-layer ReLU MLP classifier with He init on standardised inputs."""

from torch import nn

from nndiag.synthetic import teacher_classification

IN_FEATURES, CLASSES = 20, 5


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(IN_FEATURES, 64),
        nn.ReLU(),
        nn.Linear(64, 64),
        nn.ReLU(),
        nn.Linear(64, CLASSES),
    )


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (IN_FEATURES,), CLASSES)
