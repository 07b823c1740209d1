"""Healthy: an attention layer that keeps its last attention weights on the module
(`self.attn_weights`, for visualisation), a tensor computed from parameters on every forward. It
takes part in the graph but is not a leaf: a cache, never a parameter the optimizer misses."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification

TOKENS, WIDTH = 8, 32


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.out = nn.Linear(WIDTH, WIDTH)
        self.attn_weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        self.attn_weights = (q @ k.transpose(1, 2) / WIDTH**0.5).softmax(dim=-1)
        return x + self.out(self.attn_weights @ v)


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Linear(6, WIDTH), Attention(), Attention(), nn.Flatten(), nn.Linear(TOKENS * WIDTH, 4)
    )


def make_batch(batch_size: int = 16):
    return teacher_classification(batch_size, (TOKENS, 6), 4)
