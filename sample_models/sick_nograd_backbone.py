"""Sick (no-gradient): the backbone runs under torch.no_grad() inside forward, so only the head
trains. The output does depend on the input (forward moves with it); autograd says zero. The
root is the cut gradient path, named where it happens."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        self.head = nn.Linear(64, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():  # bug: left over from a feature-extraction experiment
            features = self.backbone(x)
        return self.head(features)


def build_model() -> nn.Module:
    return Net()


def make_batch(batch_size: int = 16):
    return teacher_classification(batch_size, (20,), 5)
