"""Suggestion rules on a loss-vs-LR curve: pure functions of numbers (tested on synthetic curves).

Slopes are taken against log10(lr) (a slope against lr itself is dominated by the last, largest
steps). The rules read the zero-lag `trend` (a centred running median), not the peers' EMA: an
EMA with β = 0.98 lags by ~49 steps, about 4 decades of LR at 12.5 steps per decade.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from nndiag.core.stats import mad_sigma


def smooth(losses: Sequence[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average (fastai's smoothing)."""
    avg, out = 0.0, []
    for k, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**k))
    return out


def finite(lrs: Sequence[float], losses: Sequence[float]) -> tuple[list[float], list[float]]:
    kept = [(lr, v) for lr, v in zip(lrs, losses, strict=True) if math.isfinite(v) and lr > 0]
    return [lr for lr, _ in kept], [v for _, v in kept]


def slopes(lrs: Sequence[float], losses: Sequence[float]) -> list[float]:
    """d loss / d log10(lr) by central differences (one-sided at the ends)."""
    x = [math.log10(lr) for lr in lrs]
    n = len(x)
    out = []
    for i in range(n):
        lo, hi = max(0, i - 1), min(n - 1, i + 1)
        out.append((losses[hi] - losses[lo]) / (x[hi] - x[lo]) if x[hi] != x[lo] else 0.0)
    return out


def steepest(
    lrs: Sequence[float], losses: Sequence[float], skip_start: int, skip_end: int
) -> float | None:
    """pytorch-lr-finder's rule: the most negative slope, skipping the curve's ends."""
    lrs, losses = finite(lrs, losses)
    if len(lrs) < skip_start + skip_end + 3:
        return None
    core_lrs = lrs[skip_start : len(lrs) - skip_end]
    core = losses[skip_start : len(lrs) - skip_end]
    s = slopes(core_lrs, core)
    return core_lrs[min(range(len(s)), key=s.__getitem__)]


def valley(lrs: Sequence[float], losses: Sequence[float]) -> float | None:
    """fastai's valley: the longest run of decreasing losses, a point 1/2 into its middle third."""
    lrs, losses = finite(lrs, losses)
    n = len(losses)
    if n < 3:
        return None
    lds = [1] * n
    max_start = max_end = 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
        if lds[max_end] < lds[i]:
            max_end, max_start = i, i - lds[i]
    sections = (max_end - max_start) / 3
    return lrs[max_start + int(sections) + int(sections / 2)]


def minimum_over_ten(lrs: Sequence[float], losses: Sequence[float]) -> float | None:
    """fastai's 'minimum': the LR at the lowest loss, divided by 10."""
    lrs, losses = finite(lrs, losses)
    if not lrs:
        return None
    return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10


@dataclass(frozen=True)
class Descent:
    """How clearly a curve falls: from its start level to its lowest trend point, against the
    batch-to-batch noise of the raw losses."""

    start: float  # median of the first trend points
    lowest: float
    lowest_index: int
    noise: float  # robust std of the raw loss around the trend
    fall: float  # start - lowest
    significance: float  # fall / the trend's noise

    @property
    def depth(self) -> float:
        return self.fall / abs(self.start) if self.start else 0.0


def descent(losses: Sequence[float], trend: Sequence[float], head: int, window: int) -> Descent:
    lowest = min(range(len(trend)), key=trend.__getitem__)
    start = statistics.median(trend[: max(1, min(head, lowest + 1))])
    # Batch-to-batch noise from consecutive differences (the trend changes little from one step
    # to the next; residuals around a running median would underestimate it).
    noise = mad_sigma([b - a for a, b in itertools.pairwise(losses)]) / math.sqrt(2)
    # A median of `window` points has about 1.25/sqrt(window) of one point's noise.
    trend_noise = 1.25 * noise / math.sqrt(window) if math.isfinite(noise) else math.nan
    fall = start - trend[lowest]
    significance = (
        fall / trend_noise if trend_noise and trend_noise > 0 else (math.inf if fall > 0 else 0.0)
    )
    return Descent(start, trend[lowest], lowest, noise, fall, significance)


def divergence_lr(
    lrs: Sequence[float], trend: Sequence[float], lowest_index: int, factor: float
) -> float | None:
    """The first LR past the minimum where the loss has clearly turned up: the trend climbs above
    both its start level and `factor` times its lowest value."""
    start = trend[0]
    for lr, value in zip(lrs[lowest_index:], trend[lowest_index:], strict=True):
        if value > max(start, trend[lowest_index] * factor):
            return lr
    return None


def in_log_range(lr: float, lo: float, hi: float, edge_fraction: float) -> bool:
    """Away from the edges: not in the first `edge_fraction` of [lo, hi] in log space, not at hi."""
    span = math.log10(hi) - math.log10(lo)
    return math.log10(lr) >= math.log10(lo) + edge_fraction * span and lr < hi


def log_median(values: Sequence[float]) -> float:
    return 10 ** statistics.median(math.log10(v) for v in values)
