"""Sick: a transformer language model without a causal mask, trained on next-token targets.

Position t attends to the token it must predict: the training loss falls beautifully and the
model is useless at generation.
"""

import torch
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, LENGTH, WIDTH = 40, 16, 32


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.position = nn.Parameter(torch.randn(LENGTH, WIDTH) * 0.02)
        layer = nn.TransformerEncoderLayer(
            WIDTH, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        return self.head(
            self.encoder(h)
        )  # bug: no mask=nn.Transformer.generate_square_subsequent_mask


def build_model() -> nn.Module:
    return TinyLM()


def make_batch(batch_size: int = 16):
    stream = markov_tokens(batch_size, LENGTH + 1, VOCAB)
    return stream[:, :-1], stream[:, 1:]
