"""Findings from the Jacobian's numbers: pure functions, unit-tested on hand-made measurements."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from nndiag.findings import Code, Finding, Severity, finding
from nndiag.report import Row

if TYPE_CHECKING:
    from nndiag.probes.jacobian import Config, Depth, Measurement, Memory, Zero

NAME = "jacobian"


def diagnose(m: Measurement, config: Config) -> list[Finding]:
    if m.zero is not None and m.zero.output_moves_with:
        return []  # a cut gradient path, not an output without input: the gradients probe's
    if m.zero is not None:
        return [_zero(m.zero, m.measured_from, config)]
    if m.spectrum is not None and not math.isfinite(m.spectrum.frobenius_sq):
        return [
            finding(Code.NONFINITE_VALUES, NAME, "the input-output Jacobian has NaN/Inf entries")
        ]
    findings = _affine(m.nonlinearity, m.nonlinearity_after_steps, config)
    if m.depth is not None:
        findings = _depth(m.depth, list(m.blocks), config) + findings
    if m.memory is not None:
        findings += _time(m.memory, m.max_recurrent_radius, config)
    return findings


def _zero(zero: Zero, origin: str, config: Config) -> Finding:
    if zero.zero_after_steps is False:
        return finding(
            Code.GATED_AT_INIT,
            NAME,
            f"the Jacobian with respect to the {origin} is exactly zero at init and not after a "
            "few training steps: a zero-initialised output layer or gate",
        )
    return finding(
        Code.OUTPUT_IGNORES_INPUT,
        NAME,
        f"the output does not change when any input is redrawn, and its Jacobian with respect to "
        f"the {origin} is exactly zero ({config.hutchinson_probes} random probes), also after a "
        "few training steps",
    )


def _depth(d: Depth, rows: list[Row], config: Config) -> list[Finding]:
    total = d.total_gain
    depth = len([r for r in rows if r["grad_norm"] > 0])
    if depth < config.min_profile_blocks or not math.isfinite(total):
        return []
    evidence = {"total_gain": total, "log10_gain_per_block": d.log10_gain_per_block,
                "blocks": max(0, len(rows) - 1)}  # fmt: skip
    per_block = f"{d.log10_gain_per_block:+.2g} decades per block"
    after = math.nan if d.total_gain_after_steps is None else d.total_gain_after_steps
    if total > config.gain_explode:
        # An error only when training confirms it: still exploding after a few steps; a gain
        # that the steps bring under the bound is an info (the model trains), as through time.
        confirmed = not math.isfinite(after) or after > config.gain_explode
        return [
            finding(
                Code.EXPLODING_GRADIENTS,
                NAME,
                f"through depth: the gradient grows {total:.3g}x from the output block back to "
                f"the input over {depth - 1} blocks ({per_block}; threshold "
                f"{config.gain_explode:g})"
                + (f", {after:.3g}x after a few training steps" if math.isfinite(after) else "")
                + ("" if confirmed else ": it settles as training starts"),
                where=worst_blocks(rows, high=True),
                evidence={**evidence, "total_gain_after_steps": after},
                severity=None if confirmed else Severity.INFO,
            )
        ]
    if total < config.gain_vanish and _opens(total, after, config):
        return [
            finding(
                Code.GATED_AT_INIT,
                NAME,
                f"through depth the gradient shrinks to {total:.2g}x from the output block back "
                f"to the input at init, and to {after:.2g}x after a few training steps: gates "
                "closed at init (LayerScale, class attention, a zero-initialised branch) that "
                "open as training starts",
                where=worst_blocks(rows, high=False),
                evidence={**evidence, "total_gain_after_steps": after},
            )
        ]
    if total < config.gain_vanish:
        return [
            finding(
                Code.VANISHING_GRADIENTS,
                NAME,
                f"through depth: the gradient shrinks to {total:.2g}x from the output block back "
                f"to the input over {depth - 1} blocks ({per_block}; threshold "
                f"{config.gain_vanish:g})",
                where=worst_blocks(rows, high=False),
                evidence=evidence,
            )
        ]
    return []


def _opens(before: float, after: float, config: Config) -> bool:
    """A gain that recovers past the threshold, or grows gate_opening_min-fold, in a few steps."""
    if not math.isfinite(after):
        return False
    return after >= config.gain_vanish or after >= before * config.gate_opening_min


def _affine(score: float, after: float | None, config: Config) -> list[Finding]:
    if not (math.isfinite(score) and score < config.nonlinearity_min):
        return []
    if after is not None and after >= config.nonlinearity_min:
        return []  # affine at init only: gated branches (ReZero) open after a step
    return [
        finding(
            Code.NO_NONLINEARITY,
            NAME,
            f"f((a+b)/2) equals (f(a)+f(b))/2 to {score:.2g} of the output change: the network "
            f"is an affine map of its input (threshold {config.nonlinearity_min:g})",
            evidence={"nonlinearity": score, "after_steps": after},
        )
    ]


def _time(memory: Memory, radius: float | None, config: Config) -> list[Finding]:
    growth, horizon = memory.earliest_over_last, memory.memory_horizon
    steps = memory.sequence_length
    evidence = {"memory_horizon": horizon, "sequence_length": steps, "earliest_over_last": growth,
                "max_recurrent_radius": radius}  # fmt: skip
    radius_text = f"; recurrent spectral radius {radius:.3g}" if radius is not None else ""
    if math.isfinite(growth) and growth > config.temporal_growth_max:
        later = memory.earliest_over_last_after_steps
        later = math.nan if later is None else later
        confirmed = not math.isfinite(later) or later > config.temporal_growth_max
        return [
            finding(
                Code.EXPLODING_GRADIENTS,
                NAME,
                f"through time: the last output is {growth:.3g}x more sensitive to the first of "
                f"{steps} steps than to the last: the recurrence amplifies (threshold "
                f"{config.temporal_growth_max:g}){radius_text}"
                + (f"; {later:.3g}x after a few training steps" if math.isfinite(later) else "")
                + ("" if confirmed else ": it settles as training starts"),
                where=["time steps"],
                evidence={**evidence, "earliest_over_last_after_steps": later},
                severity=None if confirmed else Severity.INFO,
            )
        ]
    if memory.recurrent and horizon < config.short_horizon_fraction * steps:
        return [
            finding(
                Code.VANISHING_GRADIENTS,
                NAME,
                f"through time: the last output forgets after {horizon} of {steps} steps: the "
                f"sensitivity to earlier steps falls below {config.horizon_fraction:g} of the last "
                f"step's{radius_text}",
                where=["time steps"],
                evidence=evidence,
                hint="Initialise the LSTM forget-gate bias to 1, use a gated cell instead of a "
                "vanilla RNN, or keep the recurrent weights' spectral radius near 1.",
            )
        ]
    return []


def worst_blocks(rows: list[Row], high: bool) -> list[str]:
    gains = [r for r in rows if math.isfinite(r.get("gain", math.nan))]
    ranked = sorted(gains, key=lambda r: r["gain"], reverse=high)
    return [r["block"] for r in ranked[:3]]
