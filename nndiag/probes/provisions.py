"""What one probe hands to later ones, typed (docs/architecture.md): the orchestrator stores each in the
context's Provisions by type, and a probe that `needs` one reads it with ctx.provided.get(Type)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nndiag.core.losses import BaselineKind
    from nndiag.probes.lr_range import Confidence


@dataclass(frozen=True)
class InitLoss:
    """The loss of a fresh copy on the fixed batch, and its chance baseline (from init-loss)."""

    loss: float
    baseline: float  # NaN when unknown
    baseline_kind: BaselineKind


@dataclass(frozen=True)
class SuggestedLR:
    """The LR range test's pick (None when it made none), for `--lr suggested` (from lr-range)."""

    lr: float | None
    confidence: Confidence
    batch_size: int
