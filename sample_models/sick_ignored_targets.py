"""Sick (ignored-targets): a label-masking step that masks every position (the prompt mask is
inverted), so every target equals -100, cross_entropy's ignore_index: the loss is NaN and
nothing trains. The model is fine; the targets are the root."""

import torch
from torch import nn

from nndiag.synthetic import markov_tokens

VOCAB, LENGTH = 32, 12


def build_model() -> nn.Module:
    return nn.Sequential(
        nn.Embedding(VOCAB, 32), nn.Linear(32, 64), nn.GELU(), nn.Linear(64, VOCAB)
    )


def make_batch(batch_size: int = 16):
    stream = markov_tokens(batch_size, LENGTH + 1, VOCAB)
    labels = stream[:, 1:].clone()
    answer = torch.zeros_like(labels, dtype=torch.bool)  # bug: should mark the answer span
    labels[~answer] = -100
    return stream[:, :-1], labels
