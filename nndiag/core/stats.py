"""Small statistics shared by the probes (pure Python: no tensors)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def slope(ys: Sequence[float], xs: Sequence[float] | None = None) -> float:
    """Least-squares slope of ys against xs (default 0, 1, 2, ...); NaN for fewer than 2 points."""
    xs = list(range(len(ys))) if xs is None else list(xs)
    if len(ys) < 2:
        return math.nan
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    spread = sum((x - mx) ** 2 for x in xs)
    if spread == 0:
        return math.nan
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / spread


def log10_slope(values: Sequence[float]) -> float:
    """Decades gained per position: the slope of log10(value) over 0, 1, 2, ... (positive values)."""
    return slope([math.log10(v) for v in values])


def relative_stderr(samples: Sequence[float]) -> float:
    """Standard error of the mean of `samples`, relative to the mean."""
    if len(samples) < 2:
        return math.nan
    mean = statistics.fmean(samples)
    if mean == 0:
        return math.nan
    return statistics.stdev(samples) / math.sqrt(len(samples)) / abs(mean)


def geometric_mean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else math.nan


def running_median(values: Sequence[float], window: int) -> list[float]:
    """Centred running median (shorter windows at the ends): a zero-lag, spike-robust smoother."""
    half = window // 2
    return [statistics.median(values[max(0, i - half) : i + half + 1]) for i in range(len(values))]


def mad_sigma(values: Sequence[float]) -> float:
    """Robust standard deviation: 1.4826 x the median absolute deviation (normal consistency)."""
    if len(values) < 2:
        return math.nan
    centre = statistics.median(values)
    return 1.4826 * statistics.median(abs(v - centre) for v in values)
