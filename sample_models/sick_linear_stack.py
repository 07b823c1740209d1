"""Sick (no-nonlinearity): six Linear layers and no activation collapse into one affine map."""

from torch import nn

from nndiag.synthetic import teacher_classification

WIDTH = 64


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(20, WIDTH),
        *[nn.Linear(WIDTH, WIDTH) for _ in range(4)],
        nn.Linear(WIDTH, 5),
    )


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 5)
