"""Sick (nondeterministic-forward): nanoGPT's attention with its dropout probability passed
unconditionally to scaled_dot_product_attention (not `self.dropout if self.training else 0`),
so dropout stays on in eval mode and two eval forwards of one batch disagree. Comparisons of
two forwards (causality) would see only that noise: they are its consequences."""

import torch
import torch.nn.functional as F
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, LENGTH, WIDTH = 32, 12, 32


class CausalSelfAttention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(WIDTH, 3 * WIDTH)
        self.proj = nn.Linear(WIDTH, WIDTH)
        self.dropout = 0.2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (z.view(b, t, 2, c // 2).transpose(1, 2) for z in self.qkv(x).split(c, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout, is_causal=True)  # bug
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class TinyGPT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.position = nn.Parameter(torch.randn(LENGTH, WIDTH) * 0.02)
        self.attn = CausalSelfAttention()
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        return self.head(self.norm(h + self.attn(h)))


def build_model() -> nn.Module:
    return TinyGPT()


def make_batch(batch_size: int = 16):
    stream = markov_tokens(batch_size, LENGTH + 1, VOCAB)
    return stream[:, :-1], stream[:, 1:]
