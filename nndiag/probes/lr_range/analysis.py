"""From a range-test curve to an LR estimate: pure functions (tested on synthetic curves)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from nndiag.core.stats import running_median
from nndiag.probes.lr_range.rules import (
    Descent,
    descent,
    divergence_lr,
    finite,
    in_log_range,
    log_median,
    minimum_over_ten,
    steepest,
    valley,
)

if TYPE_CHECKING:
    from nndiag.probes.lr_range import Config


@dataclass(frozen=True)
class Analysis:
    lrs: tuple[float, ...]
    trend: tuple[float, ...]
    descent: Descent | None  # None: too few finite points
    clear: bool  # the loss falls clearly against the noise
    rules: dict[str, float | None] = field(default_factory=dict)
    usable: tuple[float, ...] = ()  # rule picks in the descent and away from the edges
    divergence: float | None = None
    estimate: float | None = None
    source: str = ""  # "rules", "divergence" or "" (no estimate)
    why: str = ""  # when there is no estimate

    def below(self, chance: float | None, sigmas: float, window: int) -> bool:
        """Does the trend fall clearly below `chance` (the loss of an uninformed predictor)? With
        no known chance level, a clear fall is enough."""
        if not self.clear or self.descent is None:
            return False
        if chance is None or not math.isfinite(chance):
            return True
        trend_noise = (
            1.25 * self.descent.noise / math.sqrt(window)
            if math.isfinite(self.descent.noise)
            else 0.0
        )
        return self.descent.lowest < chance - sigmas * trend_noise

    @property
    def spread_decades(self) -> float:
        if len(self.usable) < 2:
            return 0.0
        logs = [math.log10(v) for v in self.usable]
        return max(logs) - min(logs)


def analyse(
    lrs: Sequence[float], losses: Sequence[float], lo: float, hi: float, config: Config
) -> Analysis:
    """`lo`..`hi` is the range the test was asked to cover (the curve may stop early)."""
    lrs, losses = finite(lrs, losses)
    if len(lrs) < config.min_points:
        return Analysis(
            tuple(lrs), tuple(losses), None, False,
            why=f"only {len(lrs)} finite points before the loss diverged",
        )  # fmt: skip
    trend = running_median(losses, config.trend_window)
    fall = descent(losses, trend, config.skip_start, config.trend_window)
    clear = fall.significance >= config.noise_sigmas and fall.fall > 0
    low = fall.lowest_index
    rules = {
        # Past the minimum a diverging run's trend wobbles steeply both ways: search the descent.
        "steepest": steepest(lrs[: low + 1], trend[: low + 1], config.skip_start, 0),
        "valley": valley(lrs[: low + 1], trend[: low + 1]),
        "minimum/10": minimum_over_ten(lrs, trend),
    }
    usable = tuple(
        lr for lr in rules.values()
        if lr is not None and lr <= lrs[low] and in_log_range(lr, lo, hi, config.edge_fraction)
    )  # fmt: skip
    divergence = divergence_lr(lrs, trend, low, config.diverge_factor)
    base = Analysis(tuple(lrs), tuple(trend), fall, clear, rules, usable, divergence)
    if clear and usable:
        return _with(base, log_median(usable), "rules")
    fallback = config.divergence_fraction * divergence if divergence else None
    if fallback is not None and in_log_range(fallback, lo, hi, config.edge_fraction):
        return _with(base, fallback, "divergence")
    if not clear:
        why = (
            f"the loss trend fell {fall.fall:.3g} ({fall.depth:.1%}), within "
            f"{config.noise_sigmas:g} noise sigmas of the batch-to-batch noise ({fall.noise:.3g})"
        )
    else:
        why = "the only candidate LRs lie at the edge of the range"
    return _with(base, None, "", why)


def _with(base: Analysis, estimate: float | None, source: str, why: str = "") -> Analysis:
    from dataclasses import replace

    return replace(base, estimate=estimate, source=source, why=why)


def sweep_candidates(centre: float, spacing: float, lo: float, hi: float) -> list[float]:
    """The estimate and its neighbours `spacing` decades either side, inside [lo, hi]."""
    step = 10**spacing
    return [lr for lr in (centre / step, centre, centre * step) if lo <= lr <= hi]


class Placement(StrEnum):
    """Where the sweep's best LR sat among its candidates."""

    INTERIOR = "interior"
    LOW_EDGE = "low edge"
    HIGH_EDGE = "high edge"
    NONE = "none"  # every trial diverged, or no estimate to sweep around
    RULES_ONLY = "rules only"  # no sweep ran: the rules' estimate stands


def sweep_best(scores: dict[float, float]) -> tuple[float | None, Placement]:
    """The LR with the lowest score, and where it sits among the candidates."""
    finite_scores = {lr: s for lr, s in scores.items() if math.isfinite(s)}
    if not finite_scores:
        return None, Placement.NONE
    best = min(finite_scores, key=finite_scores.__getitem__)
    ordered = sorted(scores)
    if best == ordered[0]:
        return best, Placement.LOW_EDGE
    if best == ordered[-1]:
        return best, Placement.HIGH_EDGE
    return best, Placement.INTERIOR


def bracket(scores: dict[float, float]) -> list[float]:
    """The LR with the lowest score and its neighbours either side, in increasing order."""
    if not scores:
        return []
    ordered = sorted(scores)
    i = ordered.index(min(ordered, key=scores.__getitem__))
    return ordered[max(0, i - 1) : i + 2]


def refine(scores: dict[float, float], best: float) -> float:
    """A parabola through the best score and its two neighbours, in log10(lr): its vertex,
    clamped to the neighbours' span (a finer pick than the half-decade grid)."""
    ordered = sorted(scores)
    i = ordered.index(best)
    if i == 0 or i == len(ordered) - 1:
        return best
    xs = [math.log10(ordered[j]) for j in (i - 1, i, i + 1)]
    ys = [scores[ordered[j]] for j in (i - 1, i, i + 1)]
    if not all(math.isfinite(y) for y in ys):
        return best
    denominator = (xs[0] - xs[1]) * (xs[0] - xs[2]) * (xs[1] - xs[2])
    a = (xs[2] * (ys[1] - ys[0]) + xs[1] * (ys[0] - ys[2]) + xs[0] * (ys[2] - ys[1])) / denominator
    b = (
        xs[2] ** 2 * (ys[0] - ys[1]) + xs[1] ** 2 * (ys[2] - ys[0]) + xs[0] ** 2 * (ys[1] - ys[2])
    ) / denominator
    if a <= 0:
        return best
    vertex = min(max(-b / (2 * a), xs[0]), xs[2])
    return float(10**vertex)
