"""Healthy by design: LoRA fine-tuning (Hu et al. 2021) of a trained, frozen base.

The base MLP is trained first (a stand-in for a loaded checkpoint), then frozen; rank-4 adapters
W + B·A with B = 0 at init and a new trainable head are what trains. At init the adapters' A
matrices get exactly zero gradient (B is zero); after one step B moves and they train.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from nndiag.synthetic import teacher_classification

RANK = 4


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.A = nn.Parameter(torch.randn(RANK, base.in_features) / math.sqrt(base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, RANK))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + x @ self.A.T @ self.B.T


def _pretrained_base() -> nn.Sequential:
    torch.manual_seed(1)
    base = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
    head = nn.Linear(64, 3)
    optimizer = torch.optim.Adam([*base.parameters(), *head.parameters()], lr=3e-3)
    g = torch.Generator().manual_seed(7)
    for _ in range(150):  # "pre-training" on a related task
        x, y = teacher_classification(64, (20,), 3, task_seed=99, generator=g)
        optimizer.zero_grad()
        F.cross_entropy(head(base(x)), y).backward()
        optimizer.step()
    return base


def build_model() -> nn.Module:
    base = _pretrained_base()
    return nn.Sequential(
        LoRALinear(base[0]), nn.ReLU(), LoRALinear(base[2]), nn.ReLU(), nn.Linear(64, 5)
    )


def make_batch(batch_size: int = 32):
    return teacher_classification(batch_size, (20,), 5)
