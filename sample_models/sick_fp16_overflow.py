"""Sick in fp16: embeddings scaled up by 1e5 (a units bug: meant to be 1e-5?) send activations
past fp16's 65504, so the first fp16 step is NaN; fp32 and bf16 are fine."""

import torch
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, STEPS = 30, 8


class Bag(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 32)
        with torch.no_grad():
            self.embed.weight.mul_(1e5)
        self.body = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.LayerNorm(64), nn.Linear(64, 4))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.body(self.embed(tokens).mean(dim=1))


def build_model() -> nn.Module:
    return Bag()


def make_batch(batch_size: int = 16):
    tokens = markov_tokens(batch_size, STEPS, VOCAB)
    return tokens, tokens[:, 0] % 4
