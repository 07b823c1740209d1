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
- causal leak, for sequence models trained on next-token targets (targets equal the inputs
  shifted by one, detected from the batch) or when `causal` is set: example b's output at
  position t_b (positions spread over the sequence, one per example) must not depend on its
  inputs after t_b: one backward pass for every position at once (examples are independent,
  checked first).

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
        low=0.0,
        high=1.0,
    )


@dataclass(frozen=True)
class Measurement:
    examples: int
    mixing: tuple[Row, ...]  # per direction: example, own, other, leak
    mixing_at: str  # where the mixing appears ("" when none)
    causal_checked: bool
    causal_reason: str  # why it was (not) checked
    positions: tuple[Row, ...]  # per example: position, own, later, leak
    leak_at: str
    batch_norm: bool
    notes: tuple[str, ...] = ()


def _shifted(inputs: Any, targets: Tensor, config: Config, ignore: int) -> bool:
    """Are the targets the inputs shifted by one position (next-token prediction)?"""
    import torch

    from nndiag.core.tensors import tensors_in

    for x in tensors_in(inputs):
        if x.dim() < 2 or x.shape[:2] != targets.shape[:2] or x.shape[1] < 2:
            continue
        a, b = targets[:, :-1], x[:, 1:]
        if x.is_floating_point() != targets.is_floating_point():
            continue
        if targets.is_floating_point():
            return bool(torch.allclose(a, b.to(a.dtype)))
        keep = a != ignore
        if bool(keep.any()) and float((a == b)[keep].float().mean()) >= config.shift_match_min:
            return True
    return False


def _leak(own: float, other: float) -> float:
    return other / own if own > 0 else 0.0


def measure(ctx: Context, config: Config) -> Measurement:
    import torch

    from nndiag.core.surface import calibrated_copy, ordered_blocks, surface

    model = calibrated_copy(ctx, None, batches=1)
    order = ordered_blocks(model, ctx.inputs)
    s = surface(model, ctx.inputs, order)
    batch_norm = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    generator = torch.Generator().manual_seed(ctx.options.seed)
    rows = ctx.rows
    mixing, mixing_at = _mixing(s, rows, generator, config) if rows > 1 else ((), "")
    if ctx.options.distributed.value != "none":
        worst = max((r["leak"] for r in mixing), default=0.0)
        mixed = float(ctx.reduce.max(torch.tensor([worst]))[0])
        mixing = tuple(dict(r, leak=max(r["leak"], mixed)) for r in mixing)
    causal, reason = _causal_wanted(ctx, config)
    positions: tuple[Row, ...] = ()
    leak_at = ""
    if causal:
        positions, leak_at, reason = _causality(
            s, rows, generator, config, mixed=bool(mixing_at), reason=reason
        )
    notes = (
        (
            "BatchNorm mixes examples in train mode by design (batch statistics): checked in eval mode",
        )
        if batch_norm
        else ()
    )
    return Measurement(
        rows,
        tuple(mixing),
        mixing_at,
        causal and bool(positions),
        reason,
        positions,
        leak_at,
        batch_norm,
        notes,
    )


def _causal_wanted(ctx: Context, config: Config) -> tuple[bool, str]:
    if config.causal is not None:
        return config.causal, "causal = " + str(config.causal).lower()
    if _shifted(ctx.inputs, ctx.targets, config, ctx.options.ignore_index):
        return True, "targets are the inputs shifted by one position"
    return False, "targets are not the inputs shifted by one position (set causal = true to check)"


def _example_mask(x: Tensor, i: int) -> Tensor:
    import torch

    mask = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    mask[i] = True
    return mask


def _mixing(s: Surface, rows: int, generator: Any, config: Config) -> tuple[tuple[Row, ...], str]:
    import torch

    from nndiag.core.leaks import first_changed, gradient_norms

    out = s(s.x0)
    if out.dim() == 0 or out.shape[0] != rows or s.x0.shape[0] != rows:
        return (), ""
    examples = sorted({0, rows - 1})
    cotangents, parts = [], []
    for i in examples:
        v = torch.zeros(out.shape, device=out.device)
        v[i] = torch.randn(out.shape[1:], generator=generator).to(out.device)
        own = _example_mask(s.x0, i)
        cotangents.append(v)
        parts.append([own, ~own])
    norms = gradient_norms(s, cotangents, parts)
    table = tuple(
        {"example": i, "own": own, "other": other, "leak": _leak(own, other)}
        for i, (own, other) in zip(examples, norms, strict=True)
    )
    leaking = [r for r in table if r["leak"] > config.leak_rtol]
    if not leaking:
        return table, ""
    i = leaking[0]["example"]
    noise = torch.randn(s.x0.shape, generator=generator).to(s.x0.device, s.x0.dtype)
    changed = torch.where(_example_mask(s.x0, i), s.x0, s.x0 + noise * (s.x0.std() + 1))
    where = first_changed(
        s, changed, lambda t: t[i] if t.dim() and t.shape[0] == rows else None, config.leak_rtol
    )
    return table, where


def _positions(rows: int, length: int) -> list[int]:
    """One position per example, spread over 0 .. length-2 (the last has no later inputs)."""
    if rows == 1:
        return [0]
    return [round(b * (length - 2) / (rows - 1)) for b in range(rows)]


def _causality(
    s: Surface, rows: int, generator: Any, config: Config, mixed: bool, reason: str
) -> tuple[tuple[Row, ...], str, str]:
    """Example b's output at position t_b, all at once (one backward) when examples are
    independent; else example 0 at three positions, one backward each."""
    import torch

    from nndiag.core.leaks import first_changed, gradient_norms

    out = s(s.x0)
    x = s.x0
    if x.dim() < 2 or out.dim() < 2 or out.shape[:2] != x.shape[:2] or x.shape[1] < 2:
        return (), "", reason + "; but the output has no position axis matching the input's"
    length = x.shape[1]
    pairs = (
        [(0, t) for t in sorted({0, length // 2, length - 2})]
        if mixed
        else list(enumerate(_positions(rows, length)))
    )
    groups = [[p] for p in pairs] if mixed else [pairs]
    cotangents, parts = [], []
    for group in groups:
        v = torch.zeros(out.shape, device=out.device)
        masks = []
        for b, t in group:
            v[b, t] = torch.randn(out.shape[2:], generator=generator).to(out.device)
            own = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
            own[b, : t + 1] = True
            later = torch.zeros_like(own)
            later[b, t + 1 :] = True
            masks += [own, later]
        cotangents.append(v)
        parts.append(masks)
    norms = gradient_norms(s, cotangents, parts)
    flat = [n for group in norms for n in group]
    table = tuple(
        {"example": b, "position": t, "own": own, "later": later, "leak": _leak(own, later)}
        for (b, t), own, later in zip(pairs, flat[0::2], flat[1::2], strict=True)
    )
    leaking = [r for r in table if r["leak"] > config.leak_rtol]
    if not leaking:
        return table, "", reason
    future = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    for b, t in pairs:
        future[b, t + 1 :] = True
    noise = torch.randn(x.shape, generator=generator).to(x.device, x.dtype)
    changed = torch.where(future, x + noise * (x.std() + 1), x)

    def own_part(t: Tensor) -> Tensor | None:
        if t.dim() < 2 or t.shape[:2] != x.shape[:2]:
            return None
        return torch.stack([t[b, : p + 1].sum(0) for b, p in pairs])

    return table, first_changed(s, changed, own_part, config.leak_rtol), reason


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
                f"own); it appears at {m.mixing_at}",
                where=[m.mixing_at.split(" ")[0]],
                evidence={"leak": worst, "directions": [r["example"] for r in mixing]},
            )
        )
    leaking = [r for r in m.positions if r["leak"] > config.leak_rtol]
    if leaking:
        earliest = min(r["position"] for r in leaking)
        worst = max(r["leak"] for r in leaking)
        findings.append(
            finding(
                Code.CAUSAL_LEAK,
                NAME,
                f"the output at position {earliest} depends on inputs after it (gradient {worst:.2g} "
                f"of the positions up to it; {m.causal_reason}); it appears at {m.leak_at}",
                where=[m.leak_at.split(" ")[0]],
                evidence={"leak": worst, "earliest_position": earliest},
            )
        )
    return findings


def present(m: Measurement, config: Config) -> Presentation:
    mixing = max((r["leak"] for r in m.mixing), default=0.0)
    parts = [f"batch mixing {mixing:.2g} (examples independent)" if mixing <= config.leak_rtol
             else f"batch mixing {mixing:.2g} at {m.mixing_at}"]  # fmt: skip
    if m.causal_checked:
        leak = max((r["leak"] for r in m.positions), default=0.0)
        parts.append(f"causal leak {leak:.2g}" + (f" at {m.leak_at}" if m.leak_at else " (causal)"))
    else:
        parts.append(f"causality not checked: {m.causal_reason}")
    if m.examples < 2:
        parts[0] = "batch mixing not checked: one example"
    tables = [Table("mixing", m.mixing, key="example", schema=("example", "own", "other", "leak"))]
    if m.positions:
        tables.append(Table("causality", m.positions, key="example"))
    metrics = {"mixing_leak": mixing, "mixing_at": m.mixing_at, "causal_checked": m.causal_checked,
               "causal_reason": m.causal_reason, "leak_at": m.leak_at}  # fmt: skip
    return Presentation("; ".join(parts), metrics, tuple(tables), m.notes)


SPEC = ProbeSpec(
    name=NAME,
    summary="batch mixing across examples, causal leaks across positions for next-token models",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    cost=lambda c: 1.5,
)
