"""activations: dead and saturated units at every activation site, on one batch at init.

Sites are activation modules and functional activation calls (nndiag.core.sites). A ReLU-family
unit is dead when it is exactly zero for every example and position of the batch; a sigmoid/tanh
value is saturated in the flat bands of its function. Sums and alive-masks are reduced across
ranks under torchrun. See docs/probes/activations.md.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nndiag.findings import Code, Finding, Severity, finding
from nndiag.probes.base import Presentation, ProbeSpec, setting
from nndiag.report import Highlight, Row, Table

if TYPE_CHECKING:
    from nndiag.core.context import Context
    from nndiag.core.sites import SiteStats

NAME = "activations"


@dataclass(frozen=True)
class Config:
    dead_fraction_max: float = setting(
        0.5,
        "a ReLU-family site with more than this share of dead units is reported (beyond chance: "
        "dead_sigmas)",
        source="TheDeepChecker (Ben Braiek & Khomh 2022): more than half the layer",
        low=0.0,
        high=1.0,
    )
    dead_sigmas: float = setting(
        3.0,
        "the dead units must exceed dead_fraction_max of the site by this many binomial standard "
        "deviations, sqrt(n·p·(1-p)) for n units",
        source="a unit whose input hardly varies across examples (a squeeze-excite ReLU on pooled "
        "features) is dead on the whole batch with probability 1/2 at init, independently of the "
        "others (its weights' sign decides): n such units give more than half dead almost half "
        "the time (6 of 8 in timm's MobileNetV3 and 3 of 4 in its SE-ResNet-18 SE blocks, which "
        "train); 3 deviations is about 1 in 1000 per site. 64 units need 45 dead, 1024 need 561",
        low=0.0,
    )
    saturated_fraction_max: float = setting(
        0.5,
        "a sigmoid/tanh site with more than this share of saturated values is reported",
        source="TheDeepChecker (Ben Braiek & Khomh 2022)",
        low=0.0,
        high=1.0,
    )
    tanh_saturation: float = setting(
        0.99,
        "tanh values with |y| above this are saturated",
        source="the derivative 1 - y² is then below 2% of its peak",
        low=0.0,
        high=1.0,
    )
    dead_examples: int = setting(
        64,
        "examples (fresh batches after the fixed one) a unit must be zero on to count as dead",
        source="a unit active on 5% of inputs is zero on all of 16 examples 44% of the time, "
        "on all of 64 only 4%",
        low=1,
    )
    max_batches: int = setting(
        4,
        "batches at most for those examples (the fixed one, then fresh ones)",
        source="dead_examples (64) in batches of 16",
        low=1,
    )
    min_examples: int = setting(
        8,
        "with fewer examples than this in total, dead units are not judged (a batch of one "
        "example leaves about half of a ReLU layer at zero by chance)",
        source="half of a ReLU layer is zero on one example; on 8 independent ones 0.4%",
        low=1,
    )
    sigmoid_saturation: float = setting(
        0.01,
        "sigmoid values below this or above 1 minus this are saturated",
        source="the derivative y(1 - y) is then below 4% of its peak 0.25",
        low=0.0,
        high=0.5,
    )


@dataclass(frozen=True)
class Measurement:
    rows: tuple[Row, ...]  # one per site: kind, calls, units, mean, std, dead/saturated fractions
    examples: int = 0  # examples the dead-unit statistics saw (this rank's)


def measure(ctx: Context, config: Config) -> Measurement:
    batches: list[Any] = [None]  # the fixed batch, then fresh ones
    while len(batches) * ctx.rows < config.dead_examples and len(batches) < config.max_batches:
        batches.append(ctx.next_batch())
    # Train mode, as training runs: BatchNorm normalises with batch statistics.
    rows = _site_rows(ctx, ctx.fresh_model().train(), batches, config)
    if _beyond(rows, config):
        # Confirmed by training: still dead (saturated) on the same examples a few steps later?
        # (Nothing trains when every parameter is frozen: the units stay as they are.)
        from nndiag.core.training import after_steps

        stepped = (
            _site_rows(ctx, after_steps(ctx).model.train(), batches, config)
            if ctx.trainable
            else rows
        )
        later = {r["site"]: r for r in stepped}
        rows = [
            dict(
                r,
                dead_after_steps=later.get(r["site"], {}).get("dead_fraction"),
                saturated_after_steps=later.get(r["site"], {}).get("saturated_fraction"),
            )
            for r in rows
        ]
    return Measurement(tuple(rows), len(batches) * ctx.rows * ctx.reduce.world)


def _beyond(rows: list[Row], config: Config) -> bool:
    return any(
        _too_many_dead(r["dead_fraction"], r["units"], config)
        or (r["saturated_fraction"] or 0.0) > config.saturated_fraction_max
        for r in rows
    )


def _too_many_dead(fraction: float | None, units: int | None, config: Config) -> bool:
    """More dead units than chance gives: beyond dead_fraction_max by dead_sigmas binomial
    standard deviations."""
    if not fraction or not units:
        return False
    p = config.dead_fraction_max
    return fraction * units > units * p + config.dead_sigmas * math.sqrt(units * p * (1 - p))


def _site_rows(ctx: Context, model: Any, batches: list[Any], config: Config) -> list[Row]:
    import torch

    from nndiag.core.reduce import across
    from nndiag.core.sites import record_sites

    forwards = [functools.partial(ctx.forward, model, b) for b in batches]
    sites = record_sites(model, forwards, config.tanh_saturation, config.sigmoid_saturation)
    stats = list(sites.values())
    if stats:  # one collective for the sums, one for the alive masks
        sums = across(ctx.reduce.sum, [[s.values, s.total, s.total_sq, s.saturated] for s in stats])
        masks = [s.alive for s in stats if s.alive is not None]
        if masks:
            alive = ctx.reduce.max(torch.cat(masks).float()).bool()
            for s in stats:
                if s.alive is not None:
                    count = s.alive.numel()
                    s.alive, alive = alive[:count], alive[count:]
        for s, (values, total, total_sq, saturated) in zip(stats, sums, strict=True):
            s.values, s.total, s.total_sq, s.saturated = (
                int(values),
                total,
                total_sq,
                int(saturated),
            )
    return [_row(site, s) for site, s in sites.items()]


def _row(site: str, s: SiteStats) -> Row:
    mean = s.total / max(1, s.values)
    var = max(0.0, s.total_sq / max(1, s.values) - mean * mean)
    return {
        "site": site,
        "kind": s.kind,
        "calls": s.calls,
        "units": int(s.alive.numel()) if s.alive is not None else None,
        "mean": mean,
        "std": math.sqrt(var),
        # None where the statistic does not apply (a ReLU does not saturate, a tanh cannot die)
        "dead_fraction": 1.0 - float(s.alive.float().mean()) if s.alive is not None else None,
        "saturated_fraction": s.saturated / s.values if s.kind in ("tanh", "sigmoid") else None,
    }


def _dead(m: Measurement, config: Config) -> list[Row]:
    """Dead beyond chance at init and still after the confirmation steps; not judged on too few
    examples. A site of 9 units or fewer is never judged: a wholly dead one stops the signal,
    which the gradients and dependence checks report."""
    if m.examples < config.min_examples:
        return []
    return [
        r for r in m.rows
        if _too_many_dead(r["dead_fraction"], r["units"], config)
        and _too_many_dead(r.get("dead_after_steps"), r["units"], config)
    ]  # fmt: skip


def _saturated(m: Measurement, config: Config) -> list[Row]:
    """Saturated above the bound at init and still after the confirmation steps."""
    limit = config.saturated_fraction_max
    return [
        r for r in m.rows
        if (r["saturated_fraction"] or 0.0) > limit
        and (r.get("saturated_after_steps") or 0.0) > limit
    ]  # fmt: skip


def diagnose(m: Measurement, config: Config) -> list[Finding]:
    findings = []
    dead, saturated = _dead(m, config), _saturated(m, config)
    if dead:
        worst = max(r["dead_fraction"] for r in dead)
        findings.append(
            finding(
                Code.DEAD_UNITS,
                NAME,
                f"{len(dead)} ReLU site(s) have more than {config.dead_fraction_max:.0%} of their "
                f"units at zero on all {m.examples} examples, beyond chance for their width, at "
                f"init and after a few training steps (worst {worst:.0%})",
                where=[r["site"] for r in dead],
                evidence={
                    "dead_fraction": {r["site"]: r["dead_fraction"] for r in dead},
                    "whole_layers": [r["site"] for r in dead if r["dead_fraction"] >= 1.0],
                },
            )
        )
    if saturated:
        worst = max(r["saturated_fraction"] for r in saturated)
        findings.append(
            finding(
                Code.SATURATED_UNITS,
                NAME,
                f"{len(saturated)} sigmoid/tanh site(s) have more than "
                f"{config.saturated_fraction_max:.0%} of their outputs in the flat region, at "
                f"init and after a few training steps (worst {worst:.0%})",
                where=[r["site"] for r in saturated],
                evidence={r["site"]: r["saturated_fraction"] for r in saturated},
            )
        )
    return findings


def present(m: Measurement, config: Config) -> Presentation:
    index = {r["site"]: i for i, r in enumerate(m.rows)}
    highlights = [
        Highlight(index[r["site"]], "dead_fraction", Severity.WARNING) for r in _dead(m, config)
    ]
    highlights += [
        Highlight(index[r["site"]], "saturated_fraction", Severity.WARNING)
        for r in _saturated(m, config)
    ]
    dead = [r["dead_fraction"] for r in m.rows if r["dead_fraction"] is not None]
    saturated = [r["saturated_fraction"] for r in m.rows if r["saturated_fraction"] is not None]
    parts = [f"{len(m.rows)} sites"]
    if dead:
        parts.append(f"most dead {max(dead):.0%}")
    if saturated:
        parts.append(f"most saturated {max(saturated):.0%}")
    return Presentation(
        ", ".join(parts),
        metrics={"sites": len(m.rows)},
        tables=(
            Table(
                "sites",
                m.rows,
                tuple(highlights),
                key="site",
                watch=("dead_fraction", "saturated_fraction", "std"),
            ),
        ),
    )


SPEC = ProbeSpec(
    name=NAME,
    raises=(Code.DEAD_UNITS, Code.SATURATED_UNITS),
    summary="dead ReLU units, saturated sigmoid/tanh per activation site (modules and functional calls)",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    sharded=True,
    # Measured in plain training steps of the same model: ResNet-50 2.2, GPT-2 small 1.4
    # (benchmarks/real_size/run.py, default check, 2-core CPU, 2026-11-28).
    cost=lambda c: 2.2,
    quick=True,
    order=60,
)
