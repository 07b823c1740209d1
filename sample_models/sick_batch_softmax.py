"""Sick: attention weights normalised over the batch (softmax(dim=0)) instead of over positions.

Every example's output depends on every other example in the batch: the loss still falls in
training, and the model fails at evaluation on batches of another composition.
"""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


class PoolOverBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Linear(20, 1)
        self.body = nn.Sequential(nn.Linear(20, 32), nn.ReLU())
        self.head = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(self.score(x), dim=0)  # bug: over the batch, not the features
        return self.head(self.body(x) * weights * x.shape[0])


def build_model() -> nn.Module:
    return PoolOverBatch()


def make_batch(batch_size: int = 16):
    return teacher_classification(batch_size, (20,), 5)
