"""Sick (frozen-parameters): the first layer was frozen by a leftover fine-tuning line."""

from torch import nn

from nndiag.synthetic import teacher_classification


def build_model() -> nn.Module:
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5))
    model[0].requires_grad_(False)
    return model


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 5)
