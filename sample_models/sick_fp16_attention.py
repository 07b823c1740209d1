"""Sick in fp16: attention scores q·kᵀ overflow fp16 inside nn.MultiheadAttention's fused
forward (un-normalised inputs of large scale), though every module output and fp32 and bf16 are
fine. The overflow is inside the op, where module-output checks do not look."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification

TOKENS, WIDTH = 12, 64


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(8, WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, 4, batch_first=True)
        self.head = nn.Linear(WIDTH, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (
            self.embed(x) * 800.0
        )  # bug: a scale meant for another unit; no LayerNorm before attention
        a, _ = self.attn(h, h, h)
        return self.head(a.mean(dim=1) / 800.0)


def build_model() -> nn.Module:
    return Net()


def make_batch(batch_size: int = 16):
    return teacher_classification(batch_size, (TOKENS, 8), 3)
