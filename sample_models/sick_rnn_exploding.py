"""Sick (exploding-gradients): a ReLU RNN whose recurrent matrix has spectral radius 2.5.

The ReLU passes about half the units, so each step still multiplies the gradient through time by
≈ 1.4: over 64 steps the last output is ~1e9 times more sensitive to the first token than to the
last. (At radius 1.5 the ReLU's gating cancels the growth.)
"""

import torch
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, WIDTH, STEPS, RADIUS = 30, 32, 64, 2.5


class ReluRNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.rnn = nn.RNN(WIDTH, WIDTH, nonlinearity="relu", batch_first=True)
        self.head = nn.Linear(WIDTH, VOCAB)
        with torch.no_grad():
            w = torch.randn(WIDTH, WIDTH)
            w /= torch.linalg.eigvals(w).abs().max()
            self.rnn.weight_hh_l0.copy_(RADIUS * w)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.rnn(self.embed(tokens))  # (batch, time, width)
        return self.head(hidden[:, -1])


def build_model() -> nn.Module:
    return ReluRNN()


def make_batch(batch_size: int):
    stream = markov_tokens(batch_size, STEPS + 1, VOCAB)
    return stream[:, :-1], stream[:, -1]
