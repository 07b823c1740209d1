"""Sick (vanishing-gradients through time): a tanh RNN with recurrent spectral radius 0.3.

Each step keeps about 0.3 of the previous state, so after a handful of the 48 steps the last
output no longer depends on the input.
"""

import torch
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, WIDTH, STEPS, RADIUS = 30, 32, 48, 0.3


class ShortMemory(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.rnn = nn.RNN(WIDTH, WIDTH, batch_first=True)
        self.head = nn.Linear(WIDTH, VOCAB)
        with torch.no_grad():
            w = torch.randn(WIDTH, WIDTH)
            w /= torch.linalg.eigvals(w).abs().max()
            self.rnn.weight_hh_l0.copy_(RADIUS * w)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(self.embed(tokens))  # (batch, time, width)
        return self.head(hidden[:, -1])


def build_model() -> nn.Module:
    return ShortMemory()


def make_batch(batch_size: int):
    stream = markov_tokens(batch_size, STEPS + 1, VOCAB)
    return stream[:, :-1], stream[:, -1]
