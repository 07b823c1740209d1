"""Sick (double-softmax): the model ends in a softmax and the loss is nll_loss, which expects
log-probabilities: the loss at init is about -1/C (negative) and its gradient pushes the wrong
way for confident predictions."""

import torch.nn.functional as F
from torch import nn

from nndiag.synthetic import teacher_classification


def build_model() -> nn.Module:
    return nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 5), nn.Softmax(dim=-1))


def loss_fn(outputs, targets):
    return F.nll_loss(outputs, targets)  # bug: needs log-probabilities (LogSoftmax)


def make_batch(batch_size: int = 16):
    return teacher_classification(batch_size, (20,), 5)
