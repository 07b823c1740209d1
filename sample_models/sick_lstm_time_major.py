"""Sick: an LSTM without batch_first=True reading (batch, time, features) batches: it recurs over
the batch, so each example's output depends on the examples before it (and not after)."""

import torch
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, STEPS = 30, 12


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.lstm = nn.LSTM(16, 32)  # bug: batch_first defaults to False
        self.head = nn.Linear(32, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))  # treats dim 0 (the batch) as time
        return self.head(out[:, -1])


def build_model() -> nn.Module:
    return Classifier()


def make_batch(batch_size: int = 16):
    tokens = markov_tokens(batch_size, STEPS, VOCAB)
    return tokens, tokens[:, -1] % 4
