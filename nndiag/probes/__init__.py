"""The probe registry. Names and import paths only: importing this module must stay light.

`check` runs the probes in this order: cheap structural ones first, training ones last.
Each module defines `probe(ctx: Context) -> ProbeResult`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nndiag.context import Context
    from nndiag.report import ProbeResult


class ProbeName(StrEnum):
    SUMMARY = "summary"
    DATA = "data"
    INIT_LOSS = "init-loss"
    GRADIENTS = "gradients"
    ACTIVATIONS = "activations"
    JACOBIAN = "jacobian"
    LR_RANGE = "lr-range"
    OVERFIT = "overfit"


PROBE_MODULES: dict[ProbeName, str] = {
    ProbeName.SUMMARY: "nndiag.probes.summary",
    ProbeName.DATA: "nndiag.probes.data",
    ProbeName.INIT_LOSS: "nndiag.probes.init_loss",
    ProbeName.GRADIENTS: "nndiag.probes.gradients",
    ProbeName.ACTIVATIONS: "nndiag.probes.activations",
    ProbeName.JACOBIAN: "nndiag.probes.jacobian",
    ProbeName.LR_RANGE: "nndiag.probes.lr_range",
    ProbeName.OVERFIT: "nndiag.probes.overfit",
}

ProbeFn = Callable[["Context"], "ProbeResult"]


def load_probe(name: ProbeName) -> ProbeFn:
    module = importlib.import_module(PROBE_MODULES[name])
    fn: ProbeFn = module.probe
    return fn


def select(
    include: list[ProbeName] | None = None, exclude: list[ProbeName] | None = None
) -> list[ProbeName]:
    """Registry order, restricted to `include` (when given) and without `exclude`."""
    chosen = list(PROBE_MODULES) if not include else [p for p in PROBE_MODULES if p in include]
    return [p for p in chosen if p not in (exclude or [])]
