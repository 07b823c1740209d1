"""The --toy stand-in for the real-size models: a two-layer CNN on 16x16 images, batch 8, so that
CI runs run.py's every path in seconds."""

from torch import nn

from nndiag.synthetic import teacher_classification


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 10)
    )


def make_batch(batch_size: int = 8):
    return teacher_classification(batch_size, (3, 16, 16), 10)
