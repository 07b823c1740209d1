"""Healthy by design: a residual MLP with ReZero gates (Bachlechner et al. 2020).

Each branch is scaled by a learnable α initialised to 0: at init the network is the identity
plus the stem and head, the branch weights get exactly zero gradient, and the model is affine.
The first optimizer step moves α off zero and the gradients flow from then on.
"""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification

WIDTH, DEPTH, CLASSES = 64, 4, 5


class ReZeroMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(20, WIDTH)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH))
            for _ in range(DEPTH)
        )
        self.alpha = nn.Parameter(torch.zeros(DEPTH))
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for alpha, branch in zip(self.alpha, self.branches, strict=True):
            h = h + alpha * branch(h)
        return self.head(h)


def build_model() -> nn.Module:
    return ReZeroMLP()


def make_batch(batch_size: int = 32):
    return teacher_classification(batch_size, (20,), CLASSES)
