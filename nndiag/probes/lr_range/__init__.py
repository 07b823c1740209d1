"""lr-range: Leslie Smith's learning-rate range test on a copy of the model, confirmed by a
short sweep.

Smith 2017, "Cyclical Learning Rates for Training Neural Networks" §3.3: train briefly while the
learning rate grows (exponentially, as fastai and pytorch-lr-finder do), record the loss, and
start training where the loss falls fastest. Each step draws a fresh batch at the batch size you
train with, with your optimizer (every parameter group scaled by the same factor).

1. The range (running.run_range) stops at a NaN/Inf loss or when the loss diverges.
2. The estimate (analysis.analyse): the median of three classic rules (pytorch-lr-finder's
   steepest slope, fastai's valley and minimum/10) on the zero-lag trend of the descent, never at
   the range's edges; without a clear descent, a fraction of the divergence point.
3. No clear fall below chance (ln C, the target variance) on fresh batches: the same test over a
   few fixed batches tells data that cannot be learned across batches (random labels per call:
   `unlearnable-data`, info) from a model that cannot reduce the loss at any LR
   (`lr-range-unstable`, warning).
4. The sweep: short runs from the same weights on the same batches at the estimate and its
   half-decade neighbours (extended while the best is at an edge) pick the LR that trains best;
   its shape gives the confidence. See docs/probes/lr-range.md.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from nndiag.findings import Code, Finding, finding
from nndiag.probes.base import Presentation, ProbeSpec, setting
from nndiag.probes.lr_range.analysis import Placement
from nndiag.probes.provisions import InitLoss, SuggestedLR
from nndiag.report import Plot, Row, Table

if TYPE_CHECKING:
    from nndiag.core.context import Context
    from nndiag.probes.lr_range.analysis import Analysis
    from nndiag.probes.lr_range.running import Curve, Trial

NAME = "lr-range"


class Mode(StrEnum):
    EXP = "exp"
    LINEAR = "linear"


@dataclass(frozen=True)
class Config:
    start_lr: float = setting(
        1e-7, "first LR of the range", source="fastai, pytorch-lr-finder, Lightning", low=0.0
    )
    end_lr: float = setting(
        10.0, "last LR of the range", source="fastai, pytorch-lr-finder, Lightning", low=0.0
    )
    num_steps: int = setting(
        100, "steps of the range", source="fastai, pytorch-lr-finder, Lightning", low=2
    )
    mode: Mode = setting(Mode.EXP, "LR schedule of the range: exp or linear")  # noqa: RUF009
    repeats: int = setting(1, "range tests with other seeds; the estimate is their median", low=1)
    smooth_beta: float = setting(
        0.98, "EMA of the loss for the divergence stop", source="fastai", low=0.0, high=1.0
    )
    diverge_factor: float = setting(
        4.0,
        "stop when the smoothed loss exceeds this multiple of its best",
        source="fastai",
        low=1.0,
    )
    trend_window: int = setting(
        7,
        "points of the centred running median the rules read",
        source="≈ 0.56 decade; 5 let single-batch spikes through, 9 flattened short dips",
        low=1,
    )
    skip_start: int = setting(
        10, "the steepest rule skips this many first points", source="pytorch-lr-finder", low=0
    )
    skip_end: int = setting(5, "and this many last points", source="pytorch-lr-finder", low=0)
    min_points: int = setting(
        10,
        "finite points needed before divergence",
        source="more points than one trend_window (7) of the running median: a trend, not one "
        "window's median",
        low=3,
    )
    noise_sigmas: float = setting(
        3.0,
        "a fall is clear when it exceeds this many standard errors of the trend",
        source="the batch-to-batch noise of the raw loss around the trend (robust MAD)",
        low=0.0,
    )
    edge_fraction: float = setting(
        0.1,
        "no estimate within this first share of the range (log scale), nor at its last point",
        source="an edge pick means the range did not bracket the answer",
        low=0.0,
        high=1.0,
    )
    divergence_fraction: float = setting(
        0.1,
        "without a clear descent, the estimate is this fraction of the LR where the loss turned up",
        source="fastai's minimum/10 applied to the divergence point",
        low=0.0,
        high=1.0,
    )
    sign_test_sigmas: float = setting(
        2.5,
        "a sweep run has learned when its loss is below chance in this many binomial standard "
        "deviations more than half of its second-half steps",
        source="a one-sided sign test, 0.6% false alarms per run (about 3% over a sweep of five); "
        "robust to heavy-tailed batch losses",
        low=0.0,
    )
    pool_batches: int = setting(
        1,
        "fixed batches of the learnability check, a second range run when the loss does not fall "
        "below chance on fresh batches (0: no check, learnability is not judged)",
        source="memorising one batch is what the overfit probe asks of any healthy model; 0 under "
        "a tight --budget, where a short range cannot tell a slow learner from unlearnable data",
        low=0,
    )
    pool_depth_min: float = setting(
        0.1,
        "the model learns the fixed batches when their loss falls at least this share below chance",
        source="label marginals alone reach a few percent below ln C on a batch of 16",
        low=0.0,
        high=1.0,
    )
    sweep_steps: int = setting(
        50,
        "steps of each sweep run (0: no sweep, the rules' estimate is the suggestion)",
        source="calibrated in benchmarks/lr_quality.py",
        low=0,
    )
    sweep_continue: int = setting(
        100,
        "more steps for the sweep's best candidate and its neighbours either side (0: none); "
        "the longer horizon decides",
        source="calibrated in benchmarks/lr_quality.py: at 50 steps the sweep favours LRs that "
        "lose by 200 (GPT-2, an autoencoder with SGD)",
        low=0,
    )
    sweep_spacing: float = setting(
        0.5, "decades between sweep candidates", source="a half-decade grid", low=0.05
    )
    margin: float = setting(
        0.6,
        "the suggestion is this fraction of the sweep's pick (its winner, refined between the "
        "neighbours)",
        source="training runs longer than the sweep, and the best LR falls with the horizon; "
        "above the best the loss degrades faster (instability) than below it. Calibrated in "
        "benchmarks/lr_quality.py on the bracketed sweep's refined pick: 0.6, 0.8 and 1.0 reach "
        "a worst task of about x1.12, x1.18 and x1.31 (estimated from the 3-seed grids)",
        low=0.0,
        high=1.0,
    )
    sweep_extensions: int = setting(
        2,
        "times the sweep may extend past an edge where its best candidate sits",
        source="two sweep_spacing steps past the first candidates: the sweep can then reach a "
        "decade and a half either side of the range test's estimate",
        low=0,
    )
    max_skipped_steps: int = setting(
        50,
        "fp16: retries of a step the GradScaler dropped, per run",
        source="GradScaler halves its scale per skipped step: 50 halvings cover 2^16 down past "
        "fp16's smallest normal",
        low=0,
    )

    def __post_init__(self) -> None:
        from nndiag.errors import OptionError

        if not 0 < self.start_lr < self.end_lr:
            raise OptionError(
                f"lr-range: start_lr {self.start_lr:g} must be above 0 and below end_lr {self.end_lr:g}"
            )


class Learnable(StrEnum):
    YES = "yes"  # the loss falls below chance on fresh batches
    NOT_ACROSS_BATCHES = "not across batches"  # below chance on a few fixed batches only
    NO = "no"  # falls nowhere
    UNKNOWN = "not checked"  # no sweep (budget): too short a test to call the data unlearnable


@dataclass(frozen=True)
class Measurement:
    curves: tuple[Curve, ...]
    analysis: Analysis  # of the curve the estimate comes from (fresh, or the pool's)
    fresh: Analysis  # of the first fresh-batch curve
    learnable: Learnable
    trials: tuple[Trial, ...]
    suggested: float | None
    placement: Placement  # where the sweep's best sat
    batch_size: int
    batch_origin: str
    optimizer: str
    group_lrs: tuple[float, ...]  # the optimizer's own per-group LRs (factor 1)
    lo: float
    hi: float
    pool_curve: Curve | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


def _schedule(config: Config) -> list[float]:
    from nndiag.probes.lr_range.running import schedule

    linear = config.mode is Mode.LINEAR
    return [
        schedule(i, config.num_steps, config.start_lr, config.end_lr, linear)
        for i in range(config.num_steps)
    ]


def measure(ctx: Context, config: Config) -> Measurement:
    from nndiag.core.tensors import describe
    from nndiag.probes.lr_range.analysis import analyse
    from nndiag.probes.lr_range.rules import log_median

    lrs, lo, hi = _schedule(config), config.start_lr, config.end_lr
    curves = [_fresh_range(ctx, lrs, config, k) for k in range(config.repeats)]
    fresh = [analyse(c.lrs, c.losses, lo, hi, config) for c in curves]
    chance = _chance(ctx)
    estimates = [a.estimate for a in fresh if a.estimate]
    analysis = fresh[0]
    trials, suggested, placement = _sweep(
        ctx, config, log_median(estimates) if estimates else None, lo, hi
    )
    learnable, pooled, pool_curve = _learnability(ctx, lrs, config, chance, fresh[0], trials)
    if pooled is not None and suggested is None and pooled.estimate is not None:
        # no pick on fresh batches: the fixed batches' pick
        analysis, suggested, placement = pooled, pooled.estimate, Placement.RULES_ONLY
    if learnable is Learnable.NO:  # no rate lowers the loss: a suggestion would contradict that
        suggested, placement = None, Placement.NONE
    optimizer = ctx.optimizer(ctx.fresh_model())
    return Measurement(
        curves=tuple(curves),
        analysis=analysis,
        fresh=fresh[0],
        learnable=learnable,
        trials=tuple(trials),
        suggested=suggested,
        placement=placement,
        batch_size=ctx.source.batch_size,
        batch_origin=ctx.source.origin,
        optimizer=ctx.optimizer_name,
        group_lrs=tuple(g["lr"] for g in optimizer.param_groups),
        lo=lo,
        hi=hi,
        pool_curve=pool_curve,
        notes=(f"batches: {describe(ctx.inputs)}",),
    )


def _learnability(
    ctx: Context,
    lrs: list[float],
    config: Config,
    chance: float | None,
    fresh: Analysis,
    trials: list[Trial],
) -> tuple[Learnable, Analysis | None, Curve | None]:
    """Whether the loss can fall on these data: below chance on fresh batches (range or sweep),
    still falling, or else tested on a few fixed batches (their analysis and curve)."""
    if (
        fresh.below(chance, config.noise_sigmas, config.trend_window)
        or _trained_below(trials, chance, config)
        or _still_falling(trials, config)
    ):
        return Learnable.YES, None, None
    if config.pool_batches == 0 or (config.sweep_steps == 0 and fresh.clear):
        # The loss fell, not below chance: without a sweep a slow learner looks the same as
        # unlearnable data, and a second range would not tell them apart.
        return Learnable.UNKNOWN, None, None
    return _memorises(ctx, lrs, config, chance)


def _fresh_range(ctx: Context, lrs: list[float], config: Config, repeat: int) -> Curve:
    """One range test on fresh batches; each repeat its own seed (dropout masks, batches)."""
    import torch

    from nndiag.probes.lr_range.running import run_range

    torch.manual_seed(ctx.options.seed + repeat)
    label = "lr range test" + (f" {repeat + 1}/{config.repeats}" if config.repeats > 1 else "")
    draw = lambda _i: ctx.source.draw()  # noqa: E731
    return run_range(
        ctx, lrs, draw, config.diverge_factor, config.smooth_beta, config.max_skipped_steps, label
    )


def _chance(ctx: Context) -> float | None:
    """The loss of an uninformed predictor (ln C, the target variance), None when unknown."""
    known = ctx.provided.get(InitLoss)
    if known is None:
        from nndiag.core.losses import chance_baseline, observed_step

        _, observer = observed_step(ctx, ctx.fresh_model())
        baseline = chance_baseline(observer, ctx.reduce)
        return baseline.value if baseline.known else None
    return known.baseline if known.baseline > 0 else None


def _trained_below(trials: list[Trial], chance: float | None, config: Config) -> bool:
    """Did a sweep run, on fresh batches near a good LR, end clearly below chance? (A slow
    learner, or one that starts overconfident, may not show it within the range test.) A sign
    test on the second half of each run: with no signal, a loss is below chance about half the
    time; `sign_test_sigmas` binomial standard deviations more count as learning."""

    if chance is None:
        return False
    for t in trials:
        late = t.losses[len(t.losses) // 2 :]
        below = sum(loss < chance for loss in late)
        if late and below >= len(late) / 2 + config.sign_test_sigmas * math.sqrt(len(late)) / 2:
            return True
    return False


def _still_falling(trials: list[Trial], config: Config) -> bool:
    """Is the longest sweep run's loss on fresh batches still falling in its second half? Data
    that cannot be predicted across batches leaves it flat once the logits are calibrated; a
    slow learner (a plateau it is leaving, a BatchNorm CNN on a teacher, a copy task) keeps
    falling, above chance or not. Falling: the last quarter's mean below the third quarter's by
    `sign_test_sigmas` standard errors."""
    longest = max(trials, key=lambda t: t.steps, default=None)
    if longest is None or longest.steps < 16:
        return False
    late = longest.losses[longest.steps // 2 :]
    if not all(math.isfinite(v) for v in late):
        return False
    half = len(late) // 2
    first, second = late[:half], late[half:]
    error = math.sqrt(
        statistics.variance(first) / len(first) + statistics.variance(second) / len(second)
    )
    return statistics.fmean(second) < statistics.fmean(first) - config.sign_test_sigmas * error


def _memorises(
    ctx: Context, lrs: list[float], config: Config, chance: float | None
) -> tuple[Learnable, Analysis, Curve]:
    """The range test over a few fixed batches: does the loss fall well below chance there (the
    model learns; the data cannot be predicted across batches), or nowhere?"""
    from nndiag.probes.lr_range.analysis import analyse
    from nndiag.probes.lr_range.running import batch_pool, run_range

    pool = batch_pool(ctx, config.pool_batches)
    draw = lambda i: pool[i % len(pool)]  # noqa: E731
    label = "lr range test, fixed batches"
    curve = run_range(
        ctx, lrs, draw, config.diverge_factor, config.smooth_beta, config.max_skipped_steps, label
    )
    pooled = analyse(curve.lrs, curve.losses, config.start_lr, config.end_lr, config)
    learns = learns_on_pool(pooled, chance, config)
    return (Learnable.NOT_ACROSS_BATCHES if learns else Learnable.NO), pooled, curve


def learns_on_pool(pooled: Analysis, chance: float | None, config: Config) -> bool:
    """A clear fall on the fixed batches to more than `pool_depth_min` below chance (or below
    the curve's start, when chance is unknown)."""
    reference = chance if chance is not None else (pooled.descent.start if pooled.descent else None)
    return bool(
        pooled.clear
        and pooled.descent
        and reference
        and pooled.descent.lowest < (1 - config.pool_depth_min) * reference
    )


def _sweep(
    ctx: Context, config: Config, estimate: float | None, lo: float, hi: float
) -> tuple[list[Trial], float | None, Placement]:
    """Successive halving around the estimate. Round one: short runs from the same weights on
    the same batches at the estimate and its neighbours `sweep_spacing` decades apart, extended
    past an edge where the best sits. Round two: the best and its neighbours either side (a
    bracket) train on for `sweep_continue` steps; at that longer horizon (short runs favour
    learning rates that lose later) a parabola through the best and its two neighbours, in
    log10(lr), places the minimum between grid points, and the suggestion is `margin` times it."""
    if estimate is None:
        return [], None, Placement.NONE
    if config.sweep_steps == 0:
        return [], estimate, Placement.RULES_ONLY
    from nndiag.probes.lr_range.analysis import refine, sweep_candidates
    from nndiag.probes.lr_range.running import batch_pool

    pool = batch_pool(ctx, config.sweep_steps + config.sweep_continue)
    candidates = sweep_candidates(estimate, config.sweep_spacing, lo, hi)
    total = (
        config.sweep_steps * (len(candidates) + config.sweep_extensions) + 3 * config.sweep_continue
    )
    with ctx.progress.track("lr sweep", total) as advance:
        trials, best, placement = _round_one(ctx, pool, candidates, config, (lo, hi), advance)
        finalists = _round_two(ctx, pool, trials, config, advance)
    ordered = sorted(trials.values(), key=lambda t: t.lr)
    if best is None:
        return ordered, None, placement
    if not finalists:
        return ordered, config.margin * best, placement
    winner = min(finalists, key=lambda t: t.score)
    vertex = refine({t.lr: t.score for t in finalists}, winner.lr)
    return ordered, config.margin * vertex, placement


def _round_one(
    ctx: Context,
    pool: Any,
    candidates: list[float],
    config: Config,
    bounds: tuple[float, float],
    advance: Any,
) -> tuple[dict[float, Trial], float | None, Placement]:
    """Short runs at the candidates, then one more past the edge where the best sits (up to
    `sweep_extensions` times, inside the range): every trial, the best and its placement."""
    from nndiag.probes.lr_range.analysis import sweep_best
    from nndiag.probes.lr_range.running import trial

    trials: dict[float, Trial] = {}
    step = 10**config.sweep_spacing
    for extension in range(config.sweep_extensions + 1):
        for lr in candidates:
            if lr not in trials:
                trials[lr] = trial(ctx, lr, ctx.options.seed)
                trials[lr].train(ctx, pool, config.sweep_steps, advance)
        best, placement = sweep_best({lr: t.score for lr, t in trials.items()})
        beyond = {
            Placement.LOW_EDGE: best / step if best else None,
            Placement.HIGH_EDGE: best * step if best else None,
        }.get(placement)
        if beyond is None or not bounds[0] <= beyond <= bounds[1]:
            break
        if extension == config.sweep_extensions:
            break
        candidates = [beyond]
    return trials, best, placement


def _round_two(
    ctx: Context, pool: Any, trials: dict[float, Trial], config: Config, advance: Any
) -> list[Trial]:
    """The best trial and its live neighbours train on `sweep_continue` steps (the others are
    released): the longer horizon sees the minimum bracketed from both sides."""
    from nndiag.probes.lr_range.analysis import bracket

    live = {lr: t.score for lr, t in trials.items() if t.trainer is not None}
    finalists = [trials[lr] for lr in bracket(live)]
    for t in trials.values():
        if t not in finalists:
            t.release()
    for t in finalists:
        t.train(ctx, pool, config.sweep_continue, advance)
        t.release()
    return finalists


class Confidence(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NONE = "none"


def confidence(m: Measurement, config: Config) -> Confidence:
    """How far to trust the suggestion, a judgement on the measurement (calibrated in
    benchmarks/lr_quality.py): highest for a pick the sweep bracketed from both sides on data
    that proved learnable; one step lower at an edge of the sweep, or where the estimate came
    from the divergence point or learnability is in doubt."""
    analysis, placement = m.analysis, m.placement
    if placement is Placement.NONE or (analysis.estimate is None and not m.trials):
        return Confidence.NONE
    capped = analysis.source == "divergence" or m.learnable is not Learnable.YES
    if placement is Placement.INTERIOR:
        return Confidence.MEDIUM if capped else Confidence.HIGH
    if placement in (Placement.LOW_EDGE, Placement.HIGH_EDGE):
        return Confidence.LOW if capped else Confidence.MEDIUM
    # rules only (no sweep)
    strong = (
        analysis.descent is not None and analysis.descent.significance >= 10 * config.noise_sigmas
    )
    if strong and analysis.spread_decades <= 2 and not capped:
        return Confidence.HIGH
    return Confidence.LOW if capped else Confidence.MEDIUM


# ---- diagnosing ------------------------------------------------------------------------------------


def _fresh_fall(m: Measurement) -> str:
    d = m.fresh.descent
    if d is None:
        return m.fresh.why
    return f"its trend went from {d.start:.3g} to {d.lowest:.3g} in the range test, not clearly lower in the sweep"


def diagnose(m: Measurement, config: Config) -> list[Finding]:
    findings = []
    if m.learnable is Learnable.NOT_ACROSS_BATCHES:
        findings.append(
            finding(
                Code.UNLEARNABLE_DATA,
                NAME,
                f"on fresh batches the loss does not fall below chance within "
                f"{len(m.curves[0].losses)} range steps "
                f"({_fresh_fall(m)}), while on {config.pool_batches} fixed batch(es) it does: the "
                "targets carry no signal across batches (labels drawn at random on every call?), "
                "or one the model needs many more steps to pick up",
                evidence={"fresh_fall": m.fresh.descent.fall if m.fresh.descent else None},
            )
        )
    elif m.learnable is Learnable.NO:
        findings.append(
            finding(
                Code.LR_RANGE_UNSTABLE,
                NAME,
                f"no learning rate between {m.lo:g} and {m.hi:g} reduces the loss, on fresh batches "
                f"or on {config.pool_batches} fixed ones ({m.analysis.why}; {m.curves[0].stopped})",
                evidence={"stopped": m.curves[0].stopped},
            )
        )
    return findings


# ---- presenting ------------------------------------------------------------------------------------


def present(m: Measurement, config: Config) -> Presentation:
    return Presentation(
        _headline(m, config),
        _metrics(m, config),
        _tables(m, config),
        _notes(m, config),
        watched=("suggested_lr",),
    )


def _tables(m: Measurement, config: Config) -> tuple[Table, ...]:
    """The curves (every repeat, with its running-median trend), the rules' picks, the sweep's
    trials and the fixed-batch curve, each where it ran."""
    from nndiag.core.stats import running_median

    rows: list[Row] = []
    for k, curve in enumerate(m.curves):
        trend = running_median(list(curve.losses), config.trend_window) if curve.losses else []
        rows += [
            {"run": k, "step": i, "lr": lr, "loss": loss, "trend": t}
            for i, (lr, loss, t) in enumerate(zip(curve.lrs, curve.losses, trend, strict=True))
        ]
    rule_rows: list[Row] = [{"rule": r, "lr": lr} for r, lr in m.analysis.rules.items()]
    rule_rows.append({"rule": "estimate", "lr": m.analysis.estimate})
    rule_rows.append({"rule": "suggested", "lr": m.suggested})
    marks = tuple((r["rule"], r["lr"]) for r in rule_rows[-2:] if r["lr"] is not None)
    plot = Plot("lr", "trend", log_x=True, marks=marks, x_label="Learning rate",
                y_label="Loss (running median)", series="run", trim_tail=True)  # fmt: skip
    tables = [
        Table("curve", tuple(rows), key="step", plot=plot),
        Table("rules", tuple(rule_rows), key="rule", schema=("rule", "lr")),
    ]
    if m.trials:
        sweep = tuple({"lr": t.lr, "score": t.score, "steps": t.steps} for t in m.trials)
        tables.append(Table("sweep", sweep, key="lr", schema=("lr", "score", "steps")))
    if m.pool_curve is not None:
        pool_rows = tuple(
            {"step": i, "lr": lr, "loss": v}
            for i, (lr, v) in enumerate(zip(m.pool_curve.lrs, m.pool_curve.losses, strict=True))
        )
        tables.append(Table("fixed-batches", pool_rows, key="step", schema=("step", "lr", "loss")))
    return tuple(tables)


def _metrics(m: Measurement, config: Config) -> dict[str, Any]:
    descent = m.fresh.descent
    metrics: dict[str, Any] = {
        "suggested_lr": m.suggested,
        "confidence": confidence(m, config),
        "batch_size": m.batch_size,
        "batch_origin": m.batch_origin,
        "optimizer": m.optimizer,
        "learnable": m.learnable.value,
        "estimate": m.analysis.estimate,
        "estimate_source": m.analysis.source,
        "sweep_placement": m.placement,
        "depth": descent.depth if descent else None,
        "significance": descent.significance if descent else None,
        "steps_run": len(m.curves[0].lrs),
        "stopped": m.curves[0].stopped,
    }
    if m.suggested and len(m.group_lrs) > 1 and m.group_lrs[0]:
        # parameter groups keep their ratios: each group's LR scaled by the same factor
        factor = m.suggested / m.group_lrs[0]
        metrics["group_factor"] = factor
        metrics["group_lrs"] = [lr * factor for lr in m.group_lrs]
    return metrics


def _headline(m: Measurement, config: Config) -> str:
    at = f"at batch {m.batch_size} ({m.batch_origin}), {m.optimizer}"
    if m.suggested is None:
        return f"no suggestion ({m.analysis.why or 'no LR trained'}) {at}"
    return f"suggested {m.suggested:.2g} ({confidence(m, config)}) {at}"


def _notes(m: Measurement, config: Config) -> tuple[str, ...]:
    notes = list(m.notes)
    if m.suggested is not None:
        notes.append(
            f"the LR is for batch {m.batch_size}; for batch B use {m.suggested:.2g} x B/{m.batch_size} "
            f"(linear scaling, SGD: Goyal et al. 2017) or x sqrt(B/{m.batch_size}) (square root, "
            "Adam: Malladi et al. 2022)"
        )
    if len(m.group_lrs) > 1 and m.suggested:
        factor = m.suggested / m.group_lrs[0]
        notes.append(
            f"parameter groups scaled together by {factor:.3g}: "
            + ", ".join(f"group {i} {lr * factor:.2g}" for i, lr in enumerate(m.group_lrs))
        )
    if m.suggested is None:
        notes.append(
            "try a wider range (lr-range start_lr/end_lr), more steps, or a learnable batch"
        )
    if m.analysis.source == "divergence":
        notes.append(
            f"no clear descent: the suggestion starts from {config.divergence_fraction:g} x the "
            "LR where the loss turned up"
        )
    if m.learnable is Learnable.NOT_ACROSS_BATCHES and m.suggested is not None:
        notes.append("the suggestion comes from a range test over a few fixed batches")
    trust = confidence(m, config)
    if trust in (Confidence.MEDIUM, Confidence.LOW):
        notes += [f"confidence {trust}: {why}; to raise it, {what}" for why, what in _limits(m)]
    return tuple(notes)


def _limits(m: Measurement) -> list[tuple[str, str]]:
    """What held the confidence below high, each with what would raise it."""
    limits = []
    if m.placement is Placement.RULES_ONLY:
        limits.append(("no sweep ran (cut by --budget)", "give the check a larger --budget"))
    elif m.placement in (Placement.LOW_EDGE, Placement.HIGH_EDGE):
        end = "start_lr lower" if m.placement is Placement.LOW_EDGE else "end_lr higher"
        limits.append((
            f"the sweep's best sat at its {m.placement.value}",
            f"set lr-range {end} so that the sweep brackets the pick from both sides",
        ))  # fmt: skip
    if m.analysis.source == "divergence":
        limits.append((
            "the loss showed no clear descent: the estimate is a fraction of where it diverged",
            "check the data and the loss (the overfit probe tells whether the model can learn)",
        ))  # fmt: skip
    if m.learnable is not Learnable.YES:
        limits.append((
            f"learnability {m.learnable.value}",
            "use a batch whose targets the inputs predict",
        ))  # fmt: skip
    return limits


def provide(m: Measurement, config: Config) -> SuggestedLR:
    return SuggestedLR(m.suggested, confidence(m, config), m.batch_size)


def shrink(config: Config, factor: float) -> tuple[Config, str]:
    """Fewer steps over a narrower range (1e-6 to 1 holds every suggestion of the benchmark);
    the sweep's second round goes first, then the sweep (they cost the most)."""
    steps = max(MIN_STEPS, round(config.num_steps * factor))
    # The trend window and the skipped first points cover the same share of the range as before.
    scale = steps / config.num_steps
    window = max(3, round(config.trend_window * scale) | 1)
    narrow: dict[str, Any] = {
        "start_lr": max(config.start_lr, 1e-6),
        "end_lr": min(config.end_lr, 1.0),
        "trend_window": window,
        "skip_start": max(1, round(config.skip_start * scale)),
        "skip_end": max(1, round(config.skip_end * scale)),
    }
    span = f"{steps} range steps from {narrow['start_lr']:g} to {narrow['end_lr']:g}"
    if factor >= 0.6:
        smaller = dataclasses.replace(
            config, num_steps=steps, sweep_continue=0, repeats=1, **narrow
        )
        return smaller, f"{span}, a one-round sweep"
    smaller = dataclasses.replace(
        config, num_steps=steps, sweep_steps=0, sweep_continue=0, repeats=1, pool_batches=0,
        **narrow,
    )  # fmt: skip
    return smaller, f"{span}, no sweep (confidence at most medium), learnability not judged"


MIN_STEPS = 20


def cost(config: Config) -> float:
    """Training steps: the range (x repeats, and a fixed-batch range when the loss does not fall
    below chance: one run in five on average), the sweep (four candidates on average) and its
    second round (three)."""
    ranges = config.repeats + (0.2 if config.pool_batches else 0.0)
    return config.num_steps * ranges + config.sweep_steps * 4 + config.sweep_continue * 3


SPEC = ProbeSpec(
    name=NAME,
    raises=(Code.LR_RANGE_UNSTABLE, Code.UNLEARNABLE_DATA),
    sharded=True,
    summary="Smith's LR range test at your batch size and optimizer, confirmed by a short sweep",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    trains=True,
    needs=(InitLoss,),
    provides=SuggestedLR,
    provide=provide,
    cost=cost,
    shrink=shrink,
    aliases={
        "lr_start": "start_lr",
        "lr_end": "end_lr",
        "range_steps": "num_steps",
        "range_mode": "mode",
        "repeats": "repeats",
    },
    order=100,
)
