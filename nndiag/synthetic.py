"""Learnable synthetic data: labels from a fixed random teacher, tokens from a fixed Markov chain.

Random labels drawn independently of the inputs carry no signal, so a loss on fresh batches of
them cannot fall (an LR range test on them is meaningless). These generators keep a fixed hidden
rule (seeded by `task_seed`) while every call draws fresh examples from `generator`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

TEACHER_HIDDEN = 64
MARKOV_BRANCHING = 3  # each token has 3 likely successors: achievable loss ≈ ln 3 vs ln V at chance


def teacher(
    in_features: int, out_features: int, task_seed: int, *, balanced: bool = False
) -> nn.Module:
    """A fixed random 2-layer tanh network with unit-scale outputs. Its random output bias is as
    large as the logits' spread, so one class wins the argmax for many inputs (98% of 1x28x28
    inputs in one of 2 classes, 93% of 3x32x32 in one of 3): `balanced` leaves it out. (The
    samples and the registry keep the biased rule their calibration used; the synthetic batches
    nndiag makes for a model file without data are balanced, or a healthy model would get
    degenerate-targets from nndiag's own labels.)"""
    g = torch.Generator().manual_seed(task_seed)
    output = nn.Linear(TEACHER_HIDDEN, out_features)
    net = nn.Sequential(nn.Linear(in_features, TEACHER_HIDDEN), nn.Tanh(), output)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / max(1, p.shape[-1]) ** 0.5)
        if balanced:
            output.bias.zero_()
    return net


def teacher_classification(
    batch_size: int,
    shape: tuple[int, ...],
    num_classes: int,
    *,
    task_seed: int = 1234,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Standard-normal inputs of `shape`; labels = argmax of a fixed random teacher."""
    x = torch.randn(batch_size, *shape, generator=generator)
    with torch.no_grad():
        y = teacher(x[0].numel(), num_classes, task_seed)(x.flatten(1)).argmax(dim=1)
    return x, y


def markov_tokens(
    batch_size: int,
    length: int,
    vocab: int,
    *,
    task_seed: int = 1234,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(batch, length) token ids from a fixed chain where each token has a few likely successors."""
    successors = torch.randint(
        0, vocab, (vocab, MARKOV_BRANCHING), generator=torch.Generator().manual_seed(task_seed)
    )
    tokens = torch.empty(batch_size, length, dtype=torch.long)
    tokens[:, 0] = torch.randint(0, vocab, (batch_size,), generator=generator)
    for t in range(1, length):
        choice = torch.randint(0, MARKOV_BRANCHING, (batch_size,), generator=generator)
        tokens[:, t] = successors[tokens[:, t - 1], choice]
    return tokens
