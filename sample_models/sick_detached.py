"""Sick (no-gradient): one branch is detached, so its parameters never receive a gradient."""

from torch import nn

from nndiag.synthetic import teacher_classification


class TwoBranch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left = nn.Sequential(nn.Linear(20, 32), nn.ReLU())
        self.right = nn.Sequential(nn.Linear(20, 32), nn.ReLU())
        self.head = nn.Linear(64, 5)

    def forward(self, x):
        right = self.right(x).detach()  # bug: cuts the right branch out of the graph
        return self.head(torch_cat(self.left(x), right))


def torch_cat(a, b):
    import torch

    return torch.cat([a, b], dim=1)


def build_model() -> nn.Module:
    return TwoBranch()


def make_batch(batch_size: int):
    return teacher_classification(batch_size, (20,), 5)
