"""Healthy: a bidirectional GRU classifier that reads the final state of each direction (h_n),
the right way to read a reverse recurrence (its output at the last step has seen one token)."""

import torch
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, STEPS, CLASSES = 30, 16, 4


class BiGRU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 32)
        self.gru = nn.GRU(32, 32, batch_first=True, bidirectional=True)
        self.head = nn.Linear(64, CLASSES)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        _, final = self.gru(self.embed(tokens))  # (2 directions, batch, 32)
        return self.head(torch.cat([final[0], final[1]], dim=-1))


def build_model() -> nn.Module:
    return BiGRU()


def make_batch(batch_size: int = 32):
    tokens = markov_tokens(batch_size, STEPS, VOCAB)
    return tokens, (tokens[:, 0] + tokens[:, -1]) % CLASSES
