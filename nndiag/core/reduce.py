"""Reductions across ranks. A check in one process reduces over nothing; under torchrun every
per-layer statistic is a sum (or max/min) that each rank computes on its slice of the batch and
its shards of the parameters, so one collective per probe makes it global (DESIGN.md §4)."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class Reducer(Protocol):
    rank: int
    world: int

    def sum(self, values: Tensor) -> Tensor: ...

    def max(self, values: Tensor) -> Tensor: ...

    def min(self, values: Tensor) -> Tensor: ...

    def shard_sum(self, values: Tensor) -> Tensor:
        """Sums over the ranks' shards of the parameters (identity when they are replicated)."""
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


def any_true(reducer: Reducer, flag: bool) -> bool:
    """True when `flag` holds on any rank."""
    return bool(reducer.max(torch.tensor([float(flag)]))[0] > 0)
