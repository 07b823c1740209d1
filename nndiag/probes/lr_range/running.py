"""The training loops of the LR range test: the range itself, and the confirmation sweep."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from nndiag.core.context import Context
from nndiag.core.tensors import tensors_in
from nndiag.core.training import Trainer, check_drivable, new_trainer

BATCH_POOL_BYTES = 256 * 2**20  # batches kept for the sweep: each candidate sees the same data


@dataclass(frozen=True)
class Curve:
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    stopped: str  # why the range ended
    nonfinite_lr: float | None  # the LR at which the loss became NaN/Inf


def schedule(i: int, steps: int, start: float, end: float, linear: bool) -> float:
    t = i / max(1, steps - 1)
    return start + (end - start) * t if linear else start * (end / start) ** t


def run_range(
    ctx: Context,
    lrs: Sequence[float],
    draw: Callable[[int], Any],
    diverge_factor: float,
    beta: float,
    max_skipped: int,
    description: str,
) -> Curve:
    """Train a fresh copy one step per LR; stop at a non-finite loss or when the bias-corrected
    EMA of the loss exceeds `diverge_factor` x its best (fastai's rule)."""
    trainer = new_trainer(ctx, lrs[0])
    check_drivable(trainer.optimizer)
    ratios = [
        g["lr"] / trainer.optimizer.param_groups[0]["lr"] for g in trainer.optimizer.param_groups
    ]
    rows = ctx.recording("curve")
    kept_lrs: list[float] = []
    losses: list[float] = []
    avg, best, skipped = 0.0, math.inf, 0
    stopped, nonfinite = "end of range", None
    with ctx.progress.track(description, len(lrs)) as advance:
        i = 0
        while i < len(lrs):
            for group, ratio in zip(trainer.optimizer.param_groups, ratios, strict=True):
                group["lr"] = lrs[i] * ratio
            step = trainer.step(ctx.to_device(draw(i)))
            if not math.isfinite(step.loss):
                stopped, nonfinite = f"non-finite loss at lr {lrs[i]:.3g}", lrs[i]
                break
            if not step.applied and skipped < max_skipped:
                skipped += 1  # fp16 overflow: the scaler dropped this update; retry the same LR
                continue
            avg = beta * avg + (1 - beta) * step.loss
            smoothed = avg / (1 - beta ** (len(losses) + 1))
            kept_lrs.append(lrs[i])
            losses.append(step.loss)
            rows.append({"lr": lrs[i], "loss": step.loss})
            best = min(best, smoothed)
            i += 1
            advance(1)
            if smoothed > diverge_factor * best:
                stopped = f"smoothed loss above {diverge_factor:g}x its best at lr {lrs[i - 1]:.3g}"
                break
    return Curve(tuple(kept_lrs), tuple(losses), stopped, nonfinite)


def batch_pool(ctx: Context, count: int) -> list[Any]:
    """`count` fresh batches (fewer when they are large; then they are cycled), kept on the CPU
    side so that every candidate of the sweep trains on the same data in the same order."""
    first = ctx.source.draw()
    size = sum(t.numel() * t.element_size() for t in tensors_in(first))
    keep = max(1, min(count, BATCH_POOL_BYTES // max(1, size)))
    return [first, *(ctx.source.draw() for _ in range(keep - 1))]


@dataclass
class Trial:
    """A copy training at one LR on the sweep's batches; it can go on training (the second
    round of the sweep continues the best two)."""

    lr: float
    trainer: Trainer | None
    losses: list[float] = field(default_factory=list)

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def score(self) -> float:
        """The median loss over the last quarter of the steps (inf when training diverged)."""
        tail = self.losses[-max(1, len(self.losses) // 4) :]
        if not tail or not all(math.isfinite(v) for v in tail):
            return math.inf
        return statistics.median(tail)

    def train(
        self, ctx: Context, pool: list[Any], steps: int, advance: Callable[[int], None]
    ) -> None:
        """`steps` more steps, continuing through the pool where the last call stopped."""
        if self.trainer is None:
            return
        for _ in range(steps):
            loss = self.trainer.step(ctx.to_device(pool[self.steps % len(pool)])).loss
            self.losses.append(loss)
            advance(1)
            if not math.isfinite(loss):
                self.trainer = None  # diverged: nothing more to learn from this LR
                return

    def release(self) -> None:
        self.trainer = None


def trial(ctx: Context, lr: float, seed: int) -> Trial:
    """A fresh copy at `lr`, seeded so that every candidate sees the same dropout masks."""
    torch.manual_seed(seed)
    return Trial(lr, new_trainer(ctx, lr))
