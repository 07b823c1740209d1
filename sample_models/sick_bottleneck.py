"""Sick (overfit-failed): a width-1 bottleneck right after the input (a typo for the hidden width).

The logits are linear in a monotone function of one projection of the 2-D input, so each class can
only win one interval along one direction: 16 points with 8 teacher-assigned classes cannot all be
put in contiguous runs, so the batch cannot be memorised.
"""

from torch import nn

from nndiag.synthetic import teacher_classification

HIDDEN = 1  # meant to be 64


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(2, HIDDEN), nn.Tanh(), nn.Linear(HIDDEN, 8))


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (2,), 8)
