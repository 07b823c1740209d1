"""dependencies: does an example's output depend on other examples' inputs (batch mixing), and
does a next-token model's output at position t depend on inputs after t (causal leak)?

Karpathy, "A Recipe for Training Neural Networks" (2019): use backprop to chart dependencies.
Measured on a copy in eval mode (BatchNorm then uses its running statistics: its mixing in train
mode is by design), differentiating with respect to the input, or to the embedding output for
token inputs (nndiag.core.surface), in nndiag.core.leaks:

- batch mixing: a random cotangent on example i's output; the gradient at every other example's
  input must be zero to round-off. Mixing can run one way only (an LSTM missing batch_first
  recurs over the batch: later examples depend on earlier ones), so i is the first example and
  the last: two backward passes.
- causal leak, for sequence models trained on next-token targets (targets equal an input
  shifted by one position, detected from the batch: a decoder-only LM's input_ids, an
  encoder-decoder's decoder_input_ids) or when `causal` is set: that input is changed after
  position t_b of example b (positions spread over the sequence, one per example) and example
  b's output up to t_b must not move (to round-off): one extra forward for every position at
  once (examples are independent, checked first).

Where a dependence appears: the first module whose output changes when only the other examples
(or the later positions) change. See docs/probes/dependencies.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nndiag.findings import Code, Finding, finding
from nndiag.probes.base import Presentation, ProbeSpec, setting
from nndiag.report import Row, Table

if TYPE_CHECKING:
    from torch import Tensor

    from nndiag.core.context import Context
    from nndiag.core.leaks import Place
    from nndiag.core.surface import Surface

NAME = "dependencies"


@dataclass(frozen=True)
class Config:
    leak_rtol: float = setting(
        1e-6,
        "a gradient at other examples (or later positions) above this fraction of the gradient at "
        "the example's own input is a dependence",
        source="independent parts get exactly zero from autograd; float32 round-off is ~1e-7, a "
        "reshape without permute leaks ~6e-3",
        low=0.0,
    )
    causal: bool | None = setting(
        None,
        "check causality: true, false, or None to decide from the batch (targets are the inputs "
        "shifted by one position)",
    )
    shift_match_min: float = setting(
        0.99,
        "targets are next tokens when at least this share of them equal the inputs one position on",
        source="random tokens match their shifted inputs by chance 1/V (1% at V = 100); 1% "
        "leaves room for a few replaced ids (masking, special tokens)",
        low=0.0,
        high=1.0,
    )


@dataclass(frozen=True)
class Measurement:
    examples: int
    mixing: tuple[Row, ...]  # per direction: example, own, other, leak
    mixing_at: Place | None  # where the mixing appears
    causal_checked: bool
    causal_reason: str  # why it was (not) checked
    positions: tuple[Row, ...]  # per example: position, own, later, leak
    leak_at: Place | None
    batch_norm: bool
    notes: tuple[str, ...] = ()


def shifted_input(inputs: Any, targets: Tensor, config: Config, ignore: int) -> int | None:
    """The input tensor (its index among the inputs' tensors) the targets equal shifted by one
    position (next-token prediction, teacher forcing), or None."""
    import torch

    from nndiag.core.tensors import tensors_in

    for index, x in enumerate(tensors_in(inputs)):
        if x.dim() < 2 or x.shape[:2] != targets.shape[:2] or x.shape[1] < 2:
            continue
        if x.is_floating_point() != targets.is_floating_point():
            continue
        a, b = targets[:, :-1], x[:, 1:]
        if targets.is_floating_point():
            if torch.allclose(a, b.to(a.dtype)):
                return index
            continue
        keep = a != ignore
        if bool(keep.any()) and float((a == b)[keep].float().mean()) >= config.shift_match_min:
            return index
    return None


def _leak(own: float, other: float) -> float:
    return other / own if own > 0 else 0.0


def measure(ctx: Context, config: Config) -> Measurement:
    from nndiag.core.checkpointing import inline_reentrant_checkpoints

    with inline_reentrant_checkpoints():
        return _measure(ctx, config)


def _measure(ctx: Context, config: Config) -> Measurement:
    import torch

    from nndiag.core.surface import calibrated_copy, ordered_blocks, surface
    from nndiag.core.tensors import tied_input

    model = calibrated_copy(ctx, None, batches=1)
    s = surface(model, ctx.inputs, ordered_blocks(model, ctx.inputs))
    batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    generator = torch.Generator().manual_seed(ctx.options.seed)
    rows = ctx.rows
    tied = tied_input(ctx.inputs, rows)
    independent = rows > 1 and not tied
    mixing, mixing_at = (
        _mixing(s, rows, generator, config, ctx.options.seed) if independent else ((), None)
    )
    index, reason = _causal_input(ctx, config)
    positions: tuple[Row, ...] = ()
    leak_at = None
    if index is not None:
        positions, leak_at, reason = _causality(
            ctx, model, index, generator, config, mixing_at is not None, reason
        )
    notes: tuple[str, ...] = (BATCH_NORM_NOTE,) if batch_norm else ()
    if tied:
        notes += (
            f"batch mixing not checked: {tied} is not laid out by example (its leading size "
            f"differs from the batch's {rows}), so the examples are tied by construction (a "
            "graph's edges, a shared context)",
        )
    return Measurement(
        rows,
        tuple(mixing),
        mixing_at,
        bool(positions),
        reason,
        positions,
        leak_at,
        batch_norm,
        notes,
    )


BATCH_NORM_NOTE = (
    "BatchNorm mixes examples in train mode by design (batch statistics): checked in eval mode"
)


def _causal_input(ctx: Context, config: Config) -> tuple[int | None, str]:
    """Which input to test for causality, and why (None: not tested)."""
    from nndiag.core.tensors import tensors_in

    if config.causal is False:
        return None, "causal = false"
    index = (
        shifted_input(ctx.inputs, ctx.targets, config, ctx.options.ignore_index)
        if ctx.targets is not None
        else None
    )
    if index is not None:
        return index, "targets are an input shifted by one position"
    sequences = [i for i, t in enumerate(tensors_in(ctx.inputs)) if t.dim() >= 2]
    if config.causal:
        if sequences:
            return sequences[0], "causal = true"
        return None, "causal = true, but no input has a position axis"
    tokens = [i for i in sequences if not tensors_in(ctx.inputs)[i].is_floating_point()]
    if not tokens:
        return None, ""  # no token sequence: nothing a reader would expect to be checked
    return None, "the targets are not the tokens shifted by one position (--causal checks anyway)"


def _example_mask(x: Tensor, i: int) -> Tensor:
    import torch

    mask = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    mask[i] = True
    return mask


def _mixing(
    s: Surface, rows: int, generator: Any, config: Config, seed: int
) -> tuple[tuple[Row, ...], Place | None]:
    import torch

    from nndiag.core.leaks import first_changed, gradient_norms

    out = s(s.x0)
    if out.dim() == 0 or out.shape[0] != rows or s.x0.shape[0] != rows:
        return (), None
    examples = sorted({0, rows - 1})
    cotangents, parts = [], []
    for i in examples:
        v = torch.zeros(out.shape, device=out.device)
        v[i] = torch.randn(out.shape[1:], generator=generator).to(out.device)
        mask = _example_mask(s.x0, i)
        cotangents.append(v)
        parts.append([mask, ~mask])
    norms = gradient_norms(s, cotangents, parts)
    table = tuple(
        {"example": i, "own": own, "other": other, "leak": _leak(own, other)}
        for i, (own, other) in zip(examples, norms, strict=True)
    )
    leaking = [r for r in table if r["leak"] > config.leak_rtol]
    if not leaking:
        return table, None
    i = int(leaking[0]["example"])
    noise = torch.randn(s.x0.shape, generator=generator).to(s.x0.device, s.x0.dtype)
    changed = torch.where(_example_mask(s.x0, i), s.x0, s.x0 + noise * (s.x0.std() + 1))
    pick = lambda t: t[i] if t.dim() and t.shape[0] == rows else None  # noqa: E731
    forwards = (lambda: _drawn(seed, s, s.x0), lambda: _drawn(seed, s, changed))
    where = first_changed(s.model, forwards, pick, config.leak_rtol, s.entry)
    return table, where


def _positions(rows: int, length: int) -> list[int]:
    """One position per example, spread over 0 .. length-2 (the last has no later inputs)."""
    if rows == 1:
        return [0]
    return [round(b * (length - 2) / (rows - 1)) for b in range(rows)]


def _causality(
    ctx: Context, model: Any, index: int, generator: Any, config: Config, mixed: bool, reason: str
) -> tuple[tuple[Row, ...], Place | None, str]:
    """Change the shifted input (tensor `index` of the inputs) after position t_b of example b,
    all examples at once (or, when examples mix, example 0 alone at three positions): the output
    of example b up to t_b must not move."""
    import torch

    from nndiag.core.contract import call_model, output_tensor
    from nndiag.core.dependence import same_draws
    from nndiag.core.leaks import first_changed
    from nndiag.core.tensors import replace_tensor, tensors_in

    x = tensors_in(ctx.inputs)[index]
    rows, length = x.shape[0], x.shape[1]
    seed = ctx.options.seed
    # Every forward from the same RNG state: randomness left on in eval mode (a dropout call
    # with training=True) draws the same masks and cannot pass for a leak.
    with torch.no_grad(), same_draws(seed):
        base = output_tensor(call_model(model, ctx.inputs)).double()
    if base.dim() < 2 or base.shape[:2] != x.shape[:2]:
        return (), None, reason + "; but the output has no position axis matching the input's"
    if mixed:
        groups = [[(0, t)] for t in sorted({0, length // 2, length - 2})]
    else:
        groups = [list(enumerate(_positions(rows, length)))]
    table: list[Row] = []
    where: Place | None = None
    for group in groups:
        changed = replace_tensor(ctx.inputs, index, _future_changed(x, group, generator))
        with torch.no_grad(), same_draws(seed):
            moved = output_tensor(call_model(model, changed)).double()
        for b, t in group:
            before, after = base[b, : t + 1], moved[b, : t + 1]
            scale = float(before.abs().max()) + 1e-30
            table.append(
                {"example": b, "position": t, "change": float((before - after).abs().max()) / scale}
            )
        if where is None and any(r["change"] > config.leak_rtol for r in table):

            def own(t: Tensor, group: list[tuple[int, int]] = group) -> Tensor | None:
                if t.dim() < 2 or t.shape[:2] != x.shape[:2]:
                    return None
                return torch.stack([t[b, : p + 1].sum(0) for b, p in group])

            forwards = (
                lambda: _drawn(seed, call_model, model, ctx.inputs),
                lambda changed=changed: _drawn(seed, call_model, model, changed),
            )
            where = first_changed(model, forwards, own, config.leak_rtol)
    return tuple(table), where, reason


def _future_changed(x: Tensor, group: list[tuple[int, int]], generator: Any) -> Tensor:
    """x with example b's positions after t_b replaced: other tokens, or float values moved."""
    import torch

    changed = x.clone()
    for b, t in group:
        if x.is_floating_point():
            noise = torch.randn(x[b, t + 1 :].shape, generator=generator).to(x.device, x.dtype)
            changed[b, t + 1 :] = x[b, t + 1 :] + noise * (x.std() + 1)
        else:
            low, high = int(x.min()), int(x.max())
            shift = torch.randint(
                1, max(2, high - low + 1), x[b, t + 1 :].shape, generator=generator
            ).to(x.device)
            changed[b, t + 1 :] = low + (x[b, t + 1 :] - low + shift) % max(1, high - low + 1)
    return changed


def _drawn(seed: int, fn: Any, *args: Any) -> Any:
    from nndiag.core.dependence import same_draws

    with same_draws(seed):
        return fn(*args)


def diagnose(m: Measurement, config: Config) -> list[Finding]:
    findings = []
    mixing = [r for r in m.mixing if r["leak"] > config.leak_rtol]
    if mixing:
        directions = []
        for r in mixing:
            directions.append("the first example's output depends on later examples" if r["example"] == 0
                              else "the last example's output depends on earlier examples")  # fmt: skip
        worst = max(r["leak"] for r in mixing)
        findings.append(
            finding(
                Code.BATCH_MIXING,
                NAME,
                f"in eval mode {' and '.join(directions)} (gradient {worst:.2g} of the example's "
                f"own){_outside_modules(m.mixing_at)}",
                where=[_module(m.mixing_at)],
                evidence={"leak": worst, "directions": [r["example"] for r in mixing]},
            )
        )
    leaking = [r for r in m.positions if r["change"] > config.leak_rtol]
    if leaking:
        earliest = min(r["position"] for r in leaking)
        worst = max(r["change"] for r in leaking)
        findings.append(
            finding(
                Code.CAUSAL_LEAK,
                NAME,
                f"the output at position {earliest} depends on inputs after it (changing only later "
                f"inputs moves it by {worst:.2g}, relative; {m.causal_reason})"
                f"{_outside_modules(m.leak_at)}",
                where=[_module(m.leak_at)],
                evidence={"change": worst, "earliest_position": earliest},
            )
        )
    return findings


def _module(place: Place | None) -> str:
    return place.module if place is not None and place.module else "model"


def _outside_modules(place: Place | None) -> str:
    """The place, when `where` ("model") cannot say it: a module is named there already."""
    return f"; it appears in {place}" if place is not None and not place.module else ""


def present(m: Measurement, config: Config) -> Presentation:
    mixing = max((r["leak"] for r in m.mixing), default=0.0)
    parts = [f"batch mixing {mixing:.2g} (examples independent)" if mixing <= config.leak_rtol
             else f"batch mixing {mixing:.2g} at {m.mixing_at}"]  # fmt: skip
    if m.causal_checked:
        leak = max((r["change"] for r in m.positions), default=0.0)
        parts.append(f"causal leak {leak:.2g}" + (f" at {m.leak_at}" if m.leak_at else " (causal)"))
    elif m.causal_reason:
        parts.append(f"causality not checked: {m.causal_reason}")
    if m.examples < 2:
        parts[0] = "batch mixing not checked: one example"
    tables = [Table("mixing", m.mixing, key="example", schema=("example", "own", "other", "leak"))]
    if m.positions:
        tables.append(
            Table("causality", m.positions, key="example", schema=("example", "position", "change"))
        )
    metrics = {"mixing_leak": mixing, "mixing_at": str(m.mixing_at or ""),
               "causal_checked": m.causal_checked, "causal_reason": m.causal_reason,
               "leak_at": str(m.leak_at or "")}  # fmt: skip
    return Presentation("; ".join(parts), metrics, tuple(tables), m.notes)


SPEC = ProbeSpec(
    name=NAME,
    raises=(Code.BATCH_MIXING, Code.CAUSAL_LEAK),
    feeds_inputs=True,
    summary="batch mixing across examples, causal leaks across positions for next-token models",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    # Measured in plain training steps of the same model: ResNet-50 2.0, GPT-2 small 3.3
    # (benchmarks/real_size/run.py, default check, 2-core CPU, 2026-11-28).
    cost=lambda c: 3.3,
    aliases={"causal": "causal"},
    quick=True,
    order=80,
)
