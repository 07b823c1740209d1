"""lr-range: Leslie Smith's learning-rate range test on a copy of the model.

Smith 2017, "Cyclical Learning Rates for Training Neural Networks" §3.3: train briefly while the
learning rate grows (exponentially, as fastai and pytorch-lr-finder do), record the loss, and
start training where the loss falls fastest. Each step draws a fresh batch (make_loader /
make_batch / the learnable synthetic task), so the curve measures learning, not memorisation.

Two smoothings of the raw loss are kept. `smoothed` is the peers' bias-corrected EMA (beta 0.98):
exported for comparison and used for the divergence stop. It lags by beta/(1-beta) ≈ 49 steps,
about 4 decades of LR at the default 12.5 steps per decade, which drags the peers' suggestions
toward too-high LRs and flattens short dips. The suggestion rules therefore run on `trend`, a
centred running median: zero lag, and robust to the single-batch spikes of a diverging run.
Slopes are taken against log10(lr). Three classic rules are reported side by side and combined
into one recommendation with a confidence. See docs/probes/lr-range.md.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import torch

from nndiag.config import RangeMode
from nndiag.context import Context
from nndiag.findings import Code, Finding, finding
from nndiag.losses import loss_at_init
from nndiag.report import Plot, ProbeResult, Row, Status, Table
from nndiag.training import new_trainer, skipped_when_frozen

NAME = "lr-range"

# Defaults shared by fastai's lr_find, pytorch-lr-finder and Lightning's Tuner.lr_find.
START_LR = 1e-7
END_LR = 10.0
NUM_STEPS = 100
SMOOTH_BETA = 0.98  # EMA of the loss, bias-corrected as in fastai
DIVERGE_FACTOR = 4.0  # stop when the smoothed loss exceeds 4x its best (fastai)
# Width of the centred running median behind `trend`: 7 points ≈ 0.56 decade at the default
# density. Calibrated on the sample MLP, CNN, char-LM and tiny GPT-2 curves: 5 let single-batch
# spikes through on the CNN, 9 flattened the char-LM's short dip below MIN_DEPTH.
TREND_WINDOW = 7
# pytorch-lr-finder's suggestion skips the first 10 and last 5 points of the curve.
SKIP_START, SKIP_END = 10, 5
# A range test needs this many finite points before divergence to say anything.
MIN_POINTS = 10
# "A clear loss decrease": the smoothed loss must fall at least 5% below where it started.
MIN_DEPTH = 0.05
# Confidence = depth term x agreement term. The depth term saturates when the trend falls 30%
# below its start; the agreement term falls linearly to 0 when the rules span 3 decades. On a
# clean logistic descent 1.5 decades wide the rules already sit 1.6 decades apart by construction
# (valley early in the descent, minimum/10 a decade below the bottom), so 2 decades, tried first,
# called such textbook curves "low".
FULL_DEPTH = 0.3
ZERO_AGREEMENT_DECADES = 3.0
CONFIDENT, SOMEWHAT = 0.6, 0.3  # score thresholds for "high" and "medium"
# The best smoothed loss within 5% of chance (ln C / target variance) means nothing beyond the
# label frequencies was learned: the data may carry no learnable signal.
NO_SIGNAL_FRACTION = 0.95
# No step may be retried more than this many times when fp16's GradScaler keeps skipping it.
MAX_SKIPPED_STEPS = 50


@dataclass(frozen=True)
class Curve:
    lrs: tuple[float, ...]
    losses: tuple[float, ...]
    smoothed: tuple[float, ...]  # the peers' lagging EMA
    stopped: str

    @property
    def trend(self) -> list[float]:
        return running_median(list(self.losses), TREND_WINDOW)


def schedule(i: int, steps: int, start: float, end: float, mode: RangeMode) -> float:
    t = i / max(1, steps - 1)
    if mode is RangeMode.LINEAR:
        return start + (end - start) * t
    return start * (end / start) ** t


def smooth(losses: list[float], beta: float | None = None) -> list[float]:
    """Bias-corrected exponential moving average (Adam-style correction, as in fastai)."""
    beta = SMOOTH_BETA if beta is None else beta
    avg, out = 0.0, []
    for k, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta**k))
    return out


def running_median(values: list[float], window: int) -> list[float]:
    """Centred running median (shorter windows at the ends): a zero-lag, spike-robust smoother."""
    half = window // 2
    return [statistics.median(values[max(0, i - half) : i + half + 1]) for i in range(len(values))]


def run_range(
    ctx: Context, start: float, end: float, steps: int, mode: RangeMode, description: str
) -> Curve:
    trainer = new_trainer(ctx, start)
    groups = trainer.optimizer.param_groups
    ratios = [g["lr"] / groups[0]["lr"] for g in groups]
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best, skipped, stopped = 0.0, math.inf, 0, "end of range"
    with ctx.progress.track(description, steps) as advance:
        i = 0
        while i < steps:
            lr = schedule(i, steps, start, end, mode)
            for group, ratio in zip(trainer.optimizer.param_groups, ratios, strict=True):
                group["lr"] = lr * ratio
            inputs, targets = ctx.next_batch()
            step = trainer.step(inputs, targets)
            if not math.isfinite(step.loss):
                stopped = f"non-finite loss at lr {lr:.3g}"
                break
            if not step.applied and skipped < MAX_SKIPPED_STEPS:
                skipped += 1  # fp16 overflow: the scaler dropped this update, so retry the same LR
                continue
            avg = SMOOTH_BETA * avg + (1 - SMOOTH_BETA) * step.loss
            value = avg / (1 - SMOOTH_BETA ** (len(losses) + 1))
            lrs.append(lr)
            losses.append(step.loss)
            smoothed.append(value)
            best = min(best, value)
            i += 1
            advance(1)
            if value > DIVERGE_FACTOR * best:
                stopped = f"smoothed loss above {DIVERGE_FACTOR:g}x its best at lr {lr:.3g}"
                break
    return Curve(tuple(lrs), tuple(losses), tuple(smoothed), stopped)


# ---- suggestion rules: pure functions of a curve (tested on synthetic curves) ------------------


def _finite(lrs: list[float], losses: list[float]) -> tuple[list[float], list[float]]:
    kept = [(lr, v) for lr, v in zip(lrs, losses, strict=True) if math.isfinite(v) and lr > 0]
    return [lr for lr, _ in kept], [v for _, v in kept]


def _slopes(lrs: list[float], losses: list[float]) -> list[float]:
    """d loss / d log10(lr) by central differences (one-sided at the ends)."""
    x = [math.log10(lr) for lr in lrs]
    n = len(x)
    out = []
    for i in range(n):
        lo, hi = max(0, i - 1), min(n - 1, i + 1)
        out.append((losses[hi] - losses[lo]) / (x[hi] - x[lo]) if x[hi] != x[lo] else 0.0)
    return out


def steepest(lrs: list[float], losses: list[float]) -> float | None:
    """pytorch-lr-finder's rule: the most negative slope, skipping the curve's ends."""
    lrs, losses = _finite(lrs, losses)
    if len(lrs) < SKIP_START + SKIP_END + 3:
        return None
    core_lrs, core = lrs[SKIP_START:-SKIP_END], losses[SKIP_START:-SKIP_END]
    slopes = _slopes(core_lrs, core)
    return core_lrs[min(range(len(slopes)), key=slopes.__getitem__)]


def valley(lrs: list[float], losses: list[float]) -> float | None:
    """fastai's valley: the longest run of decreasing losses, a point 1/2 into its middle third."""
    lrs, losses = _finite(lrs, losses)
    n = len(losses)
    if n < MIN_POINTS:
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


def minimum_over_ten(lrs: list[float], losses: list[float]) -> float | None:
    """fastai's 'minimum': the LR at the lowest loss, divided by 10."""
    lrs, losses = _finite(lrs, losses)
    if not lrs:
        return None
    return lrs[min(range(len(losses)), key=losses.__getitem__)] / 10


@dataclass(frozen=True)
class Suggestion:
    rules: dict[str, float | None]
    recommended: float | None
    confidence: float
    depth: float  # relative fall of the smoothed loss from its start to its minimum
    spread_decades: float

    @property
    def label(self) -> str:
        if self.recommended is None:
            return "none"
        if self.confidence >= CONFIDENT:
            return "high"
        return "medium" if self.confidence >= SOMEWHAT else "low"


def suggest(lrs: list[float], smoothed: list[float]) -> Suggestion:
    """Median of the three rules in log space, restricted to the descending part of the curve.

    `smoothed` is the curve the rules read: the probe passes the zero-lag `trend`.
    """
    lrs, smoothed = _finite(lrs, smoothed)
    if len(lrs) < MIN_POINTS:
        return Suggestion({}, None, 0.0, 0.0, math.inf)
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    start = statistics.median(smoothed[: max(1, min(SKIP_START, lowest + 1))])
    depth = (start - smoothed[lowest]) / abs(start) if start else 0.0
    rules = {
        # Past the minimum a diverging run's trend wobbles steeply both ways: search the descent.
        "steepest": steepest(lrs[: lowest + 1], smoothed[: lowest + 1]),
        "valley": valley(lrs, smoothed),
        "minimum/10": minimum_over_ten(lrs, smoothed),
    }
    # A suggestion past the minimum sits where the loss already rises: it is not "descending".
    floor, ceiling = lrs[0], lrs[lowest]
    usable = [lr for lr in rules.values() if lr is not None and floor <= lr <= ceiling]
    if depth < MIN_DEPTH or not usable:
        return Suggestion(rules, None, 0.0, depth, math.inf)
    logs = sorted(math.log10(lr) for lr in usable)
    spread = logs[-1] - logs[0]
    recommended = 10 ** statistics.median(logs)
    agreement = max(0.0, 1 - spread / ZERO_AGREEMENT_DECADES)
    confidence = min(1.0, depth / FULL_DEPTH) * agreement
    return Suggestion(rules, recommended, confidence, depth, spread)


# ---- the probe ---------------------------------------------------------------------------------


def probe(ctx: Context) -> ProbeResult:
    skipped = skipped_when_frozen(ctx, NAME)
    if skipped:
        return skipped
    options = ctx.options
    start, end = options.lr_start or START_LR, options.lr_end or END_LR
    steps = options.range_steps or NUM_STEPS
    repeats = max(1, options.repeats)
    curves = []
    for k in range(repeats):
        torch.manual_seed(options.seed + k)  # each repeat: its own dropout masks and batches
        label = "lr range test" + (f" {k + 1}/{repeats}" if repeats > 1 else "")
        curves.append(run_range(ctx, start, end, steps, options.range_mode, label))
    trends = [c.trend for c in curves]
    suggestions = [suggest(list(c.lrs), t) for c, t in zip(curves, trends, strict=True)]
    first, primary = curves[0], suggestions[0]
    recommended = [s.recommended for s in suggestions if s.recommended is not None]
    chosen = 10 ** statistics.median(math.log10(r) for r in recommended) if recommended else None

    rows: list[Row] = [
        {"run": k, "step": i, "lr": lr, "loss": loss, "smoothed": sm, "trend": tr}
        for k, (c, trend) in enumerate(zip(curves, trends, strict=True))
        for i, (lr, loss, sm, tr) in enumerate(zip(c.lrs, c.losses, c.smoothed, trend, strict=True))
    ]
    rule_rows: list[Row] = [
        {"rule": rule, "lr": lr if lr is not None else math.nan}
        for rule, lr in primary.rules.items()
    ]
    rule_rows.append({"rule": "recommended", "lr": chosen if chosen is not None else math.nan})
    marks = tuple((r["rule"], r["lr"]) for r in rule_rows if math.isfinite(r["lr"]))
    metrics: dict[str, Any] = {
        "suggested_lr": chosen,
        "confidence": primary.label if len(curves) == 1 else _combined_label(suggestions),
        "confidence_score": statistics.mean(s.confidence for s in suggestions),
        "depth": primary.depth,
        "rules_spread_decades": primary.spread_decades,
        "steps_run": len(first.lrs),
        "stopped": first.stopped,
    }
    if len(recommended) > 1:
        logs = [math.log10(r) for r in recommended]
        metrics["repeats"] = len(curves)
        metrics["repeat_spread_decades"] = max(logs) - min(logs)

    findings: list[Finding] = []
    notes: list[str] = []
    if chosen is None:
        findings.append(
            finding(
                Code.LR_RANGE_UNSTABLE,
                NAME,
                f"no learning-rate range with a clear loss decrease between {start:g} and {end:g} "
                f"(the loss trend fell {primary.depth:.1%} over {len(first.lrs)} points; "
                f"{first.stopped})",
                evidence={
                    "depth": primary.depth,
                    "points": len(first.lrs),
                    "stopped": first.stopped,
                },
            )
        )
    no_signal = _no_signal_note(ctx, min(trends[0], default=math.nan))
    if no_signal:
        notes.append(no_signal)
    return ProbeResult(
        NAME,
        Status.OK,
        metrics=metrics,
        tables=(
            Table("curve", tuple(rows), plot=Plot("lr", "trend", log_x=True, marks=marks)),
            Table("rules", tuple(rule_rows)),
        ),
        findings=tuple(findings),
        notes=tuple(notes),
    )


def _combined_label(suggestions: list[Suggestion]) -> str:
    labels = [s.label for s in suggestions]
    return min(labels, key=["none", "low", "medium", "high"].index)


def _no_signal_note(ctx: Context, best_loss: float) -> str:
    """Compare the lowest trend loss with chance: learning only label frequencies is no signal."""
    _, baseline = loss_at_init(ctx)
    known = math.isfinite(baseline.value) and baseline.value > 0
    if known and best_loss >= NO_SIGNAL_FRACTION * baseline.value:
        return (
            f"the lowest trend loss {best_loss:.3g} stays within {1 - NO_SIGNAL_FRACTION:.0%} of "
            f"chance ({baseline.kind} = {baseline.value:.3g}): the data may carry no learnable "
            "signal (labels independent of the inputs?)"
        )
    return ""
