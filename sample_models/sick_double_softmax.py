"""Sick (double-softmax): the model ends in Softmax and the default loss is cross-entropy."""

from torch import nn

from nndiag.synthetic import teacher_classification


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5), nn.Softmax(dim=-1))


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 5)
