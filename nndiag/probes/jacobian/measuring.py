"""The jacobian probe's measurement: surfaces, estimates and reductions put together."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

import torch
from torch import nn

from nndiag.core.context import Context
from nndiag.core.hooks import module_names
from nndiag.core.stats import relative_stderr, slope
from nndiag.core.surface import Surface, calibrated_copy, ordered_blocks, surface
from nndiag.core.tensors import first_examples
from nndiag.probes.jacobian import Config, Depth, Measurement, Memory, Spectrum, Zero, block_rows
from nndiag.probes.jacobian.estimators import (
    Advance,
    Profile,
    hutchinson_profile,
    jacobian_is_zero,
    nonlinearity,
    score,
    spectral_norm,
)
from nndiag.probes.jacobian.sequences import (
    memory_horizon,
    recurrent_radii,
    relative_to_last,
    temporal_sensitivity_sq,
    time_dim,
)
from nndiag.report import Row


def _subset(ctx: Context, config: Config) -> Any:
    return first_examples(ctx.inputs, ctx.rows, config.max_examples)[0]


def _surface_of(
    ctx: Context, config: Config, model: nn.Module | None = None
) -> tuple[Surface, list[nn.Module]]:
    copy = calibrated_copy(ctx, model, config.calibration_batches)
    inputs = _subset(ctx, config)
    order = ordered_blocks(copy, inputs)
    return surface(copy, inputs, order), order


def measure_jacobian(ctx: Context, config: Config, advance: Advance) -> Measurement:
    s, order = _surface_of(ctx, config)
    names = module_names(s.model)
    origin = "input" if s.entry is None else f"{names[s.entry]} output"
    generator = torch.Generator().manual_seed(ctx.options.seed)
    profile = hutchinson_profile(s, order, config.hutchinson_probes, generator, advance)
    if profile is None or sum(profile.frobenius_sq) == 0:
        return _zero(ctx, config, s, origin)
    rows = _rows(profile, order, names)
    notes: list[str] = []
    spectrum = _spectrum(
        s, profile.out_shape, profile.norms_sq[-1], config, generator, advance, notes
    )
    depth, linearity = _gains(rows), score(*nonlinearity(s))
    memory, temporal = _temporal(ctx, s, profile.out_shape, config, generator, advance)
    radii = recurrent_radii(s.model)
    return Measurement(
        measured_from=origin,
        blocks=tuple(rows),
        spectrum=spectrum,
        depth=_confirmed_depth(ctx, config, depth),
        nonlinearity=linearity,
        nonlinearity_after_steps=_confirmed_nonlinearity(ctx, config, linearity),
        memory=memory,
        temporal=tuple(temporal),
        recurrent=tuple(radii),
        max_recurrent_radius=max((r["spectral_radius"] for r in radii), default=None),
        hutchinson_probes=config.hutchinson_probes,
        notes=tuple(notes),
    )


def _zero(ctx: Context, config: Config, s: Surface, origin: str) -> Measurement:
    """An exactly zero Jacobian: does some input still move the output (a cut gradient path,
    the gradients probe's to report), and is it still zero after the confirmation steps?"""
    from nndiag.core.dependence import input_that_moves_output

    moves = input_that_moves_output(s.model, s.inputs, config.same_output_rtol, ctx.options.seed)
    after = None if moves else _zero_after_steps(ctx, config)
    return Measurement(measured_from=origin, zero=Zero(moves or "", after))


def _spectrum(
    s: Surface,
    out_shape: torch.Size,
    frobenius: list[float],
    config: Config,
    generator: torch.Generator,
    advance: Advance,
    notes: list[str],
) -> Spectrum:
    examples = s.x0.shape[0] if s.x0.dim() > 1 else 1
    d = min(s.x0[0].numel() if s.x0.dim() > 1 else s.x0.numel(), out_shape[1:].numel() or 1)
    frob_sq = sum(frobenius) / len(frobenius)
    mean_sq_singular = frob_sq / examples / d
    sigma, products = _spectral(s, config, generator, advance, notes)
    return Spectrum(
        examples=int(examples),
        frobenius_sq=frob_sq,
        frobenius_rel_stderr=relative_stderr(frobenius),
        mean_sq_singular=mean_sq_singular,
        spectral_norm=sigma,
        spectral_products=products,
        isometry_spread=sigma**2 / mean_sq_singular if mean_sq_singular > 0 else math.nan,
    )


def _rows(profile: Profile, order: list[nn.Module], names: dict[nn.Module, str]) -> list[Row]:
    norms_sq = {key: list(profile.norms_sq[key]) for key in sorted(profile.norms_sq)}
    types = [type(b).__name__ for b in order]
    return block_rows(norms_sq, [names[b] for b in order], types, profile.joins)


def _gains(rows: list[Row]) -> Depth:
    """Total gain g_x / g_out and its slope in decades per block, over the steps of depth. The
    step into a block where a second stream joins is left out: the encoder of an encoder-decoder
    reaches the output only through cross-attention, which at init reads it weakly, so its
    gradient sits orders of magnitude below the decoder's own without anything vanishing
    through depth (a transformers Marian: 4e-3 across the join, 0.2 over the other four steps)."""
    chain = [r for r in rows if r["grad_norm"] > 0]
    if len(chain) < 2:
        return Depth(math.nan, math.nan)
    logs = [math.log10(chain[0]["grad_norm"])]  # log10 g along the stitched chain
    for before, row in itertools.pairwise(chain):
        step = math.log10(row["grad_norm"] / before["grad_norm"])
        logs.append(logs[-1] + (0.0 if row["joins"] else step))
    return Depth(10 ** (logs[0] - logs[-1]), slope(logs))


def _confirmed_depth(ctx: Context, config: Config, depth: Depth) -> Depth:
    """With the confirmation copy's gain where the init's is out of bounds."""
    if not ctx.trainable or config.gain_vanish <= depth.total_gain <= config.gain_explode:
        return depth
    return dataclasses.replace(depth, total_gain_after_steps=_gain_after_steps(ctx, config))


def _confirmed_nonlinearity(ctx: Context, config: Config, score_at_init: float) -> float | None:
    """The confirmation copy's nonlinearity where the init's is below the bound, else None."""
    if not ctx.trainable or not score_at_init < config.nonlinearity_min:
        return None
    return _nonlinearity_after_steps(ctx, config)


def _spectral(
    s: Surface, config: Config, generator: torch.Generator, advance: Advance, notes: list[str]
) -> tuple[float, int]:
    try:
        return spectral_norm(
            s, generator, config.spectral_iterations, config.spectral_tolerance, advance
        )
    except RuntimeError as exc:  # an operator without double backward
        notes.append(f"spectral norm not computed: {str(exc).splitlines()[0]}")
        return math.nan, 0


def _zero_after_steps(ctx: Context, config: Config) -> bool | None:
    if not ctx.trainable:
        return None
    from nndiag.core.training import after_steps

    s, _ = _surface_of(ctx, config, after_steps(ctx).model)
    return jacobian_is_zero(s, torch.Generator().manual_seed(ctx.options.seed))


def _gain_after_steps(ctx: Context, config: Config) -> float:
    """The output-to-input gain on the confirmation copy: a gate opening shows as a gain that
    grows by orders of magnitude within a few steps; a depth problem barely moves."""
    from nndiag.core.training import after_steps

    s, order = _surface_of(ctx, config, after_steps(ctx).model)
    generator = torch.Generator().manual_seed(ctx.options.seed)
    profile = hutchinson_profile(s, order, config.hutchinson_probes, generator)
    if profile is None:
        return math.nan
    return _gains(_rows(profile, order, module_names(s.model))).total_gain


def _growth_after_steps(ctx: Context, config: Config, axis: int) -> float:
    """The temporal growth on the confirmation copy: an amplification that is real survives a
    few steps; an artefact of the init does not."""
    from nndiag.core.training import after_steps

    s, _ = _surface_of(ctx, config, after_steps(ctx).model)
    generator = torch.Generator().manual_seed(ctx.options.seed)
    norms_sq = temporal_sensitivity_sq(
        s, axis, config.hutchinson_probes, generator, lambda _n: None
    )
    return relative_to_last(norms_sq)[0]


def _nonlinearity_after_steps(ctx: Context, config: Config) -> float:
    from nndiag.core.training import after_steps

    s, _ = _surface_of(ctx, config, after_steps(ctx).model)
    return score(*nonlinearity(s))


def _temporal(
    ctx: Context,
    s: Surface,
    out_shape: torch.Size,
    config: Config,
    generator: torch.Generator,
    advance: Advance,
) -> tuple[Memory | None, list[dict[str, Any]]]:
    """The memory through time and its per-step rows, for a model with a time axis."""
    axis = time_dim(s.model, s, out_shape)
    if axis is None or s.x0.shape[axis] < config.min_sequence:
        return None, []
    norms_sq = temporal_sensitivity_sq(s, axis, config.hutchinson_probes, generator, advance)
    sensitivity = relative_to_last(norms_sq)
    steps = len(sensitivity)
    confirm = sensitivity[0] > config.temporal_growth_max and ctx.trainable
    memory = Memory(
        memory_horizon=memory_horizon(sensitivity, config.horizon_fraction),
        sequence_length=steps,
        earliest_over_last=sensitivity[0],
        recurrent=any(isinstance(m, nn.RNNBase) for m in s.model.modules()),
        earliest_over_last_after_steps=_growth_after_steps(ctx, config, axis) if confirm else None,
    )
    rows = [{"step": t, "steps_back": steps - 1 - t, "sensitivity": v}
            for t, v in enumerate(sensitivity)]  # fmt: skip
    return memory, rows
