"""precision: one forward and backward at init in fp32, under bf16 autocast and under fp16
autocast, on copies in train mode with dropout off (BatchNorm normalises with batch statistics,
as in training). On CUDA the real kernels run; on a CPU, where bf16/fp16 are emulated tens of
times slower than fp32, autocast's rounding is emulated at fp32 cost (nndiag.core.precision):
the same ranges, overflow and underflow.

Per module: the largest |activation| against fp16's range (65504) and bf16's (3.4e38). Per
format: the loss and its difference from fp32, the cosine between its parameter gradients and
fp32's, and (fp16) the share of gradient elements that are non-zero in fp32 but flush to zero
without loss scaling. Findings:

- `precision-overflow` (error): non-finite values (an op's result, the loss or a gradient) in a
  format where fp32 is finite. An error for the formats you train in (`formats`: all by default),
  info for the others. A module output beyond fp16's range that stays in fp32 and never reaches
  an fp16 op (an additive attention mask of -1e10, LongT5's) harms nothing: a note, no finding.
- `precision-underflow`: many gradients flush to zero in fp16 without GradScaler: a warning when
  you say you train in fp16, info otherwise (GradScaler, the standard fp16 recipe, fixes it).

See docs/probes/precision.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from nndiag.findings import Code, Finding, Severity, finding
from nndiag.probes.base import Presentation, ProbeSpec, setting
from nndiag.report import Row, Table

if TYPE_CHECKING:
    from nndiag.core.context import Context
    from nndiag.core.precision import Lowered, Overflow

NAME = "precision"
FP16_MAX = 65504.0  # the largest finite float16
FP16_TINY = 6.103515625e-05  # float16's smallest normal, 2**-14
BF16_MAX = 3.3895313892515355e38
FORMATS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Config:
    formats: Literal["all", "fp32", "bf16", "fp16"] = setting(
        "all",
        "the precision you train in: errors for it (all: for bf16 and fp16), info for the others",
    )
    max_examples: int = setting(
        8,
        "examples of the batch run in each format (overflow is per example)",
        source="2 under a tight --budget",
        low=1,
    )
    emulate: bool | None = setting(
        None,
        "round through the format in fp32 (true), run autocast's kernels (false), or decide by "
        "device (None: emulate on a CPU, real kernels elsewhere)",
        source="GPT-2 small, batch 8, 2 CPU cores: the probe takes 251 s with autocast's kernels, "
        "39 s emulated (12 s per fp32 step); tests/test_precision.py checks emulation against "
        "autocast's CPU kernels",
    )
    flushed_share_max: float = setting(
        0.1,
        "precision-underflow when more than this share of the non-zero fp32 gradient elements are "
        "zero in fp16 without loss scaling",
        source="calibrated on healthy samples and tiny GPT-2/BERT/Llama: 0 to 0.02 at init",
        low=0.0,
        high=1.0,
    )


@dataclass(frozen=True)
class Run:
    unsupported: str  # why autocast to this format could not run here ("" when it ran)
    loss: float
    first_nonfinite: str  # the first module whose output is NaN/Inf ("" when none)
    beyond_fp16: str  # the first module whose output exceeds 65504 ("" when none)
    grads_finite: bool
    cosine: float  # with fp32's parameter gradients
    flushed: float  # share of fp32's non-zero gradient elements that are zero here
    overflow: Overflow | None = None  # the first op that overflows (emulation only)


@dataclass(frozen=True)
class Measurement:
    runs: dict[str, Run]
    modules: tuple[Row, ...]  # module, max |output| per format
    below_tiny: float  # share of fp32 gradient elements in (0, fp16's smallest normal)
    selected: tuple[str, ...]
    device: str
    emulated: bool  # bf16/fp16 rounding emulated in fp32 (a CPU) rather than autocast's kernels


@dataclass
class _Outcome:
    loss: float
    grads: list[Any]
    first_nonfinite: str
    beyond_fp16: str
    overflow: Overflow | None


def _run(
    ctx: Context, config: Config, dtype: Any, maxima: dict[str, dict[str, float]], label: str
) -> _Outcome:
    """One forward and backward on a fresh copy under autocast to `dtype` (None: fp32): the real
    kernels, or emulated op by op in float32 (nndiag.core.precision), backward included."""
    import contextlib

    import torch
    from torch import nn

    from nndiag.core.hooks import forward_hooks, module_names
    from nndiag.core.tensors import first_examples

    torch.manual_seed(ctx.options.seed)
    model = ctx.fresh_model().train()
    # BatchNorm needs two examples
    batch, _ = first_examples(ctx.batch, ctx.rows, max(2, config.max_examples))
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.eval()
    nonfinite: list[str] = []
    beyond: list[str] = []
    record = _range_hook(module_names(model), maxima, label, nonfinite, beyond)
    mode, forward = _lowering(ctx, config, dtype, model)
    with forward_hooks(dict.fromkeys(model.modules(), record)), forward:
        loss = ctx.run_step(model, batch).loss.reshape(())
    value = float(loss.detach().float())
    if loss.requires_grad and math.isfinite(value):
        with mode if mode is not None else contextlib.nullcontext():
            if mode is not None:
                mode.backward = True
            loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    overflow = mode.first_overflow if mode is not None else None
    return _Outcome(
        value, grads, nonfinite[0] if nonfinite else "", beyond[0] if beyond else "", overflow
    )


def _lowering(ctx: Context, config: Config, dtype: Any, model: Any) -> tuple[Lowered | None, Any]:
    """How the forward runs in `dtype`: emulated (the Lowered mode, tracking the model's
    modules), autocast's kernels, or plain fp32 (dtype None)."""
    import contextlib

    import torch

    from nndiag.core.precision import Lowered

    if dtype is None:
        return None, contextlib.nullcontext()
    if not emulated(ctx, config):
        return None, torch.autocast(ctx.device.type, dtype=dtype)
    mode = Lowered(dtype)
    forward = contextlib.ExitStack()
    forward.enter_context(mode)
    forward.enter_context(mode.tracking(model))
    return mode, forward


def _range_hook(
    names: dict[Any, str],
    maxima: dict[str, dict[str, float]],
    label: str,
    nonfinite: list[str],
    beyond: list[str],
) -> Any:
    """A forward hook recording each module's largest |output| under `label`, and the first
    module with a non-finite output (and, in fp16, beyond its range) into the lists."""
    from nndiag.core.precision import peak_abs
    from nndiag.core.tensors import tensors_in

    def record(module: Any, _inputs: Any, output: Any) -> None:
        floats = [t for t in tensors_in(output) if t.is_floating_point()]
        if not floats:
            return
        peaks = [peak_abs(t) if t.numel() else 0.0 for t in floats]
        finite = all(math.isfinite(p) for p in peaks)
        if any(math.isnan(p) for p in peaks):  # the largest |value| that is not NaN
            peaks = [
                float(t.detach().abs().nan_to_num(posinf=math.inf).max()) if t.numel() else 0.0
                for t in floats
            ]
        peak = max(peaks)
        maxima.setdefault(names[module], {})[label] = peak
        if not finite and not nonfinite:
            nonfinite.append(names[module])
        if label == "fp16" and finite and peak > FP16_MAX and not beyond:
            beyond.append(names[module])

    return record


def emulated(ctx: Context, config: Config) -> bool:
    return ctx.device.type == "cpu" if config.emulate is None else config.emulate


def measure(ctx: Context, config: Config) -> Measurement:
    import torch

    maxima: dict[str, dict[str, float]] = {}
    fp32 = _run(ctx, config, None, maxima, "fp32")
    loss32, reference, bad32 = fp32.loss, fp32.grads, fp32.first_nonfinite
    present_ = [g for g in reference if g is not None]
    nonzero = sum(int(g.count_nonzero()) for g in present_)
    tiny = sum(int(((g.abs() < FP16_TINY) & (g != 0)).sum()) for g in present_) / max(1, nonzero)
    finite32 = all(bool(torch.isfinite(g).all()) for g in present_)
    runs = {"fp32": Run("", loss32, bad32, "", finite32, 1.0, 0.0)}
    for label, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        try:
            out = _run(ctx, config, dtype, maxima, label)
        except RuntimeError as exc:  # an operator without a kernel for this format on this device
            runs[label] = Run(str(exc).splitlines()[0], math.nan, "", "", False, math.nan, math.nan)
            continue
        runs[label] = Run(
            "", out.loss, out.first_nonfinite, out.beyond_fp16,
            *_compare(out.grads, reference, nonzero), out.overflow,
        )  # fmt: skip
    rows = tuple(
        {"module": name, **{f"max_abs_{k}": v for k, v in peaks.items()}}
        for name, peaks in maxima.items()
    )
    selected = FORMATS[1:] if config.formats == "all" else (config.formats,)
    return Measurement(runs, rows, tiny, selected, ctx.device.type, emulated(ctx, config))


def _compare(grads: list[Any], reference: list[Any], nonzero: int) -> tuple[bool, float, float]:
    """(all finite, cosine with fp32's gradients, share of fp32's non-zeros flushed to zero).

    Accumulated per parameter in float64, never concatenated: at 124M parameters one flat
    float64 copy of the gradients is a gigabyte.
    """
    import torch

    if [g is None for g in grads] != [r is None for r in reference]:
        return False, math.nan, math.nan  # no backward here: the loss was not finite
    pairs = [(g, r) for g, r in zip(grads, reference, strict=True) if g is not None]
    flushed = sum(int(((g == 0) & (r != 0)).sum()) for g, r in pairs) / max(1, nonzero)
    if not all(bool(torch.isfinite(g).all()) for g, _ in pairs):
        return False, math.nan, flushed

    def flat(t: torch.Tensor) -> torch.Tensor:  # a complex gradient as its (real, imaginary) pairs
        return (torch.view_as_real(t) if t.is_complex() else t).flatten().double()

    dot = sum(float(torch.dot(flat(g), flat(r))) for g, r in pairs)
    norm = math.sqrt(sum(float(flat(g).square().sum()) for g, _ in pairs))
    norm32 = math.sqrt(sum(float(flat(r).square().sum()) for _, r in pairs))
    cosine = dot / (norm * norm32) if norm and norm32 else math.nan
    return True, cosine, flushed


def overflowing(m: Measurement) -> dict[str, tuple[str, str]]:
    """format -> (what overflows there, where fp32 is finite; the first module to show it)."""
    fp32 = m.runs["fp32"]
    if not (math.isfinite(fp32.loss) and fp32.grads_finite and not fp32.first_nonfinite):
        return {}  # fp32 itself is not finite: that is nonfinite-values, not precision
    found = {}
    for label in FORMATS[1:]:
        run = m.runs[label]
        if run.unsupported:
            continue
        if run.overflow is not None:
            o = run.overflow
            place = {"": "outside any module", "backward": "in the backward pass"}.get(
                o.module, f"in {o.module}"
            )
            found[label] = (
                f"aten.{o.op} {place} meets values up to {o.peak:.3g}, beyond {label}'s range",
                o.module if o.module not in ("", "backward") else "",
            )
        elif run.first_nonfinite:
            found[label] = (f"NaN/Inf from {run.first_nonfinite} on", run.first_nonfinite)
        elif not math.isfinite(run.loss) or not run.grads_finite:
            what = "loss" if not math.isfinite(run.loss) else "gradient"
            found[label] = (f"a NaN/Inf {what}", "")
    return found


def safe(m: Measurement, config: Config) -> list[str]:
    """Formats with no overflow (and, for fp16, little underflow without loss scaling)."""
    bad = overflowing(m)
    flushed = m.runs["fp16"].flushed
    return [
        f for f in FORMATS
        if f not in bad and not m.runs[f].unsupported and (f != "fp16" or not flushed > config.flushed_share_max)
    ]  # fmt: skip


def diagnose(m: Measurement, config: Config) -> list[Finding]:
    findings = []
    for label, (what, module) in overflowing(m).items():
        chosen = label in m.selected
        findings.append(
            finding(
                Code.PRECISION_OVERFLOW,
                NAME,
                f"under {label} autocast at init: {what}, where fp32 is finite"
                + ("" if chosen else f" (you train in {config.formats}: for your information)"),
                where=[module] if module else [],
                severity=None if chosen else Severity.INFO,
                hint=None
                if label == "fp16"
                else "Scale the offending activations down (init, normalisation).",
            )
        )
    flushed = m.runs["fp16"].flushed
    if flushed > config.flushed_share_max and "fp16" not in overflowing(m):  # NaN: no backward
        explicit = config.formats == "fp16"
        findings.append(
            finding(
                Code.PRECISION_UNDERFLOW,
                NAME,
                f"{flushed:.0%} of the non-zero gradient elements flush to zero in fp16 without loss "
                f"scaling ({m.below_tiny:.0%} of fp32's are below fp16's smallest normal {FP16_TINY:.2g})",
                severity=None if explicit else Severity.INFO,
                evidence={"flushed": flushed, "below_tiny": m.below_tiny},
            )
        )
    return findings


def present(m: Measurement, config: Config) -> Presentation:
    bad = overflowing(m)
    ok = safe(m, config)
    headline = f"safe at init: {', '.join(ok) or 'none'}"
    if bad:
        headline += "; " + "; ".join(f"{k}: {what}" for k, (what, _) in bad.items())
    fp16 = m.runs["fp16"]
    if fp16.flushed > 0 and "fp16" in ok:
        headline += f"; fp16 without scaling flushes {fp16.flushed:.0%} of gradients"
    formats = tuple(
        {"format": k, "loss": r.loss, "loss_diff": abs(r.loss - m.runs["fp32"].loss),
         "grad_cosine": r.cosine, "flushed_share": r.flushed, "first_nonfinite": r.first_nonfinite or None}
        for k, r in m.runs.items()
    )  # fmt: skip
    metrics = {
        "safe": ok,
        "below_fp16_normal": m.below_tiny,
        **{f"{k}_grad_cosine": r.cosine for k, r in m.runs.items()},
    }
    tables = (Table("formats", formats, key="format"), Table("modules", m.modules, key="module"))
    notes = tuple(
        f"{k} autocast could not run on {m.device}: {r.unsupported}"
        for k, r in m.runs.items()
        if r.unsupported
    )
    if m.runs["fp16"].beyond_fp16 and "fp16" not in bad:
        notes += (
            f"{m.runs['fp16'].beyond_fp16} outputs values beyond fp16's {FP16_MAX:g} that stay in "
            "fp32 (no fp16 op reads them: the loss and gradients are finite)",
        )
    return Presentation(headline, metrics, tables, notes)


SPEC = ProbeSpec(
    name=NAME,
    raises=(Code.PRECISION_OVERFLOW, Code.PRECISION_UNDERFLOW),
    summary="fp32, bf16 and fp16 autocast at init: activation ranges, overflow, gradient underflow",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    # Three forward+backward passes on max_examples of a batch of about 8, beside three fresh
    # copies and a float64 gradient comparison that do not shrink with the examples: at 2
    # examples, ResNet-50 2.5 and GPT-2 small 3.4 plain training steps of the same model
    # (benchmarks/real_size/run.py, default check, 2-core CPU, 2026-11-28).
    cost=lambda c: 2.0 + 3.0 * min(1.0, c.max_examples / 8),
    shrink=lambda c, factor: (
        dataclasses.replace(c, max_examples=max(2, round(c.max_examples * factor))),
        "fewer examples per format",
    ),
    aliases={"precision": "formats"},
    order=90,
)
