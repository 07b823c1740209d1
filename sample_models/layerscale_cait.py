"""Healthy by design: a CaiT-style transformer (Touvron et al. 2021): LayerScale gates of 1e-5 on
every residual branch, and class-attention blocks that read the patch tokens into a class token
through gated attention. At init the output barely depends on the input (the gates are closed),
so gradients "vanish" toward the input; the first steps open the gates."""

import torch
from torch import nn

from nndiag.synthetic import teacher_classification

TOKENS, WIDTH, DEPTH, CLASSES = 8, 16, 4, 5


class Block(nn.Module):
    def __init__(self, cls_only: bool = False) -> None:
        super().__init__()
        self.cls_only = cls_only
        self.norm1, self.norm2 = nn.LayerNorm(WIDTH), nn.LayerNorm(WIDTH)
        self.attn = nn.MultiheadAttention(WIDTH, 2, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(WIDTH, 32), nn.GELU(), nn.Linear(32, WIDTH))
        self.gamma1 = nn.Parameter(1e-5 * torch.ones(WIDTH))
        self.gamma2 = nn.Parameter(1e-5 * torch.ones(WIDTH))

    def forward(self, x: torch.Tensor, cls: torch.Tensor | None = None) -> torch.Tensor:
        if self.cls_only:  # class attention: the class token attends to itself and the patches
            assert cls is not None
            u = self.norm1(torch.cat([cls, x], dim=1))
            a, _ = self.attn(u[:, :1], u, u, need_weights=False)
            cls = cls + self.gamma1 * a
            return cls + self.gamma2 * self.mlp(self.norm2(cls))
        u = self.norm1(x)
        x = x + self.gamma1 * self.attn(u, u, u, need_weights=False)[0]
        return x + self.gamma2 * self.mlp(self.norm2(x))


class CaiT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, WIDTH)
        self.blocks = nn.ModuleList(Block() for _ in range(DEPTH))
        self.cls_token = nn.Parameter(torch.randn(1, 1, WIDTH) * 0.02)
        self.cls_blocks = nn.ModuleList(Block(cls_only=True) for _ in range(2))
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        for block in self.cls_blocks:
            cls = block(h, cls)
        return self.head(self.norm(cls[:, 0]))


def build_model() -> nn.Module:
    return CaiT()


def make_batch(batch_size: int = 16):
    return teacher_classification(batch_size, (TOKENS, 4), CLASSES)
