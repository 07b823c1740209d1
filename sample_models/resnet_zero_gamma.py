"""Healthy by design: a small ResNet whose residual blocks end in a BatchNorm with γ = 0
(Goyal et al. 2017, "Accurate, Large Minibatch SGD"): every block starts as the identity, and
the weights inside the branches get exactly zero gradient until the first step moves γ."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification


class Block(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
        )
        nn.init.zeros_(self.body[4].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


class ResNet(nn.Module):
    def __init__(self, width: int = 16, blocks: int = 3, classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        self.blocks = nn.Sequential(*(Block(width) for _ in range(blocks)))
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


def build_model() -> nn.Module:
    return ResNet()


def make_batch(batch_size: int = 32):
    return teacher_classification(batch_size, (3, 12, 12), 5)
