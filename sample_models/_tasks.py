"""Learnable synthetic data for the sample models (a helper module, not a sample itself).

Labels come from a fixed random teacher network and tokens from a fixed low-entropy Markov chain,
so that fresh batches carry signal: a loss that falls on them means the model is learning.
"""

from __future__ import annotations

import torch
from torch import nn

_SEED = 1234


def teacher_classification(batch_size: int, shape: tuple[int, ...], num_classes: int):
    """Standardised Gaussian inputs; labels = argmax of a fixed random 2-layer teacher."""
    g = torch.Generator().manual_seed(_SEED)
    features = int(torch.tensor(shape).prod())
    teacher = nn.Sequential(nn.Linear(features, 64), nn.Tanh(), nn.Linear(64, num_classes))
    with torch.no_grad():
        for p in teacher.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5)
        x = torch.randn(batch_size, *shape)
        y = teacher(x.flatten(1)).argmax(dim=1)
    return x, y


def markov_tokens(batch_size: int, length: int, vocab: int, branching: int = 3):
    """Sequences from a fixed Markov chain where each token has `branching` likely successors."""
    g = torch.Generator().manual_seed(_SEED)
    successors = torch.randint(0, vocab, (vocab, branching), generator=g)
    tokens = torch.empty(batch_size, length, dtype=torch.long)
    tokens[:, 0] = torch.randint(0, vocab, (batch_size,))
    for t in range(1, length):
        choice = torch.randint(0, branching, (batch_size,))
        tokens[:, t] = successors[tokens[:, t - 1], choice]
    return tokens
