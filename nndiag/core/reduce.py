"""Reductions across ranks. A check in one process reduces over nothing; under torchrun every
per-layer statistic is a sum (or max/min) that each rank computes on its slice of the batch and
its shards of the parameters, so one collective per probe makes it global (docs/distributed.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch
from torch import Tensor, nn


class Reducer(Protocol):
    rank: int
    world: int

    def sum(self, values: Tensor) -> Tensor: ...

    def max(self, values: Tensor) -> Tensor: ...

    def min(self, values: Tensor) -> Tensor: ...

    def shard_sum(self, values: Tensor) -> Tensor:
        """Sums over the ranks' shards of the parameters (identity when they are replicated)."""
        ...

    def average_gradients(self, model: nn.Module) -> None:
        """Average the gradients over the ranks where they are replicated (DDP)."""
        ...


class LocalReducer:
    """One process: every reduction is the identity."""

    rank = 0
    world = 1

    def sum(self, values: Tensor) -> Tensor:
        return values

    def max(self, values: Tensor) -> Tensor:
        return values

    def min(self, values: Tensor) -> Tensor:
        return values

    def shard_sum(self, values: Tensor) -> Tensor:
        return values

    def average_gradients(self, model: nn.Module) -> None:
        """One process: the gradients are the whole batch's already."""


def across(
    reduction: Callable[[Tensor], Tensor], rows: Sequence[Sequence[float]]
) -> list[list[float]]:
    """Rows of this rank's numbers through one collective (`reducer.sum`, `.shard_sum`, ...),
    in float64: the sums of every row, tensor or site a probe reports, in a single call."""
    if not rows:
        return []
    result: list[list[float]] = reduction(torch.tensor(rows, dtype=torch.float64)).tolist()
    return result


def any_true(reducer: Reducer, flag: bool) -> bool:
    """True when `flag` holds on any rank: under torchrun, a decision to run more forward
    passes must be the same on every rank (each pass of a sharded model is a collective)."""
    return bool(reducer.max(torch.tensor([float(flag)]))[0] > 0)


def all_true(reducer: Reducer, flag: bool) -> bool:
    return bool(reducer.min(torch.tensor([float(flag)]))[0] > 0)


def mean(reducer: Reducer, value: float) -> float:
    """The mean over ranks of a per-rank mean (equal slices: the whole batch's mean)."""
    if reducer.world == 1:
        return value
    return float(reducer.sum(torch.tensor([value], dtype=torch.float64))[0]) / reducer.world
