"""data: statistics of one batch of inputs and targets.

Findings: `input-scale` (float inputs far from zero-mean, unit-scale), `degenerate-targets`
(constant regression targets, or one class for nearly the whole batch), `nonfinite-values`
(NaN/Inf in inputs or targets). Integer inputs (token ids) and booleans (masks) are described but
never scale-checked; class targets equal to the ignore index (-100) are left out of the target
statistics and the class histogram. Under torchrun every rank describes the whole batch (the
probe reads no model). See docs/probes/data.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nndiag.findings import Code, Finding, Severity, finding
from nndiag.probes.base import Presentation, ProbeSpec, setting
from nndiag.report import Highlight, Row, Table

if TYPE_CHECKING:
    from torch import Tensor

    from nndiag.core.context import Context

NAME = "data"


@dataclass(frozen=True)
class Config:
    input_rms_max: float = setting(
        10.0,
        "float inputs whose RMS sqrt(mean² + std²) exceeds this are off-scale",
        source="LeCun et al. 1998, Efficient BackProp §4.3: centred, unit-variance inputs. Raw "
        "0..255 pixels give RMS ≈ 147, pixels/255 ≈ 0.6, standardised data ≈ 1: a decade of room",
        low=0.0,
    )
    input_rms_min: float = setting(
        0.01,
        "float inputs whose RMS is below this are vanishingly small",
        source="the same band, a factor 100 below unit scale",
        low=0.0,
    )
    majority_fraction_max: float = setting(
        0.9,
        "one class above this share of the batch's labels is degenerate",
        source="15 of 16 examples: under balanced classes this has probability below 1e-3",
        low=0.0,
        high=1.0,
    )
    constant_target_rtol: float = setting(
        1e-6,
        "regression targets whose std is below this fraction of (|mean| + 1) are constant",
        source="float32 round-off",
        low=0.0,
    )


@dataclass(frozen=True)
class Measurement:
    rows: tuple[Row, ...]  # one per input tensor, then the targets
    classes: tuple[Row, ...]  # class histogram (classification)
    classification: bool
    target_values: int  # target elements counted (ignored labels excluded)
    target_elements: int = 0  # every target element, ignored labels included
    ignore_index: int = -100
    has_targets: bool = True  # False under a training_step: the targets are inside the step

    @property
    def input_rows(self) -> tuple[Row, ...]:
        return self.rows[:-1] if self.has_targets else self.rows


def _stats(name: str, t: Tensor, keep: Tensor | None) -> Row:
    """Mean, std, min, max and non-finite count (float64)."""
    import torch

    x = t.detach().double().flatten()
    if keep is not None:
        x = x[keep.flatten()]
    finite = x[torch.isfinite(x)]
    n, nonfinite = finite.numel(), x.numel() - finite.numel()
    mean = float(finite.mean()) if n else math.nan
    var = float(finite.var()) if n > 1 else 0.0
    row: Row = {
        "tensor": name,
        "dtype": str(t.dtype).removeprefix("torch."),
        "shape": "x".join(map(str, t.shape)),
        "mean": mean,
        "std": math.sqrt(var),
        "min": float(finite.min()) if n else math.nan,
        "max": float(finite.max()) if n else math.nan,
        "nonfinite": int(nonfinite),
        "rms": math.sqrt(mean * mean + var) if n else math.nan,
    }
    if not t.is_floating_point():
        row["distinct"] = int(torch.unique(t if keep is None else t[keep]).numel())
    return row


def measure(ctx: Context, config: Config) -> Measurement:
    import torch

    from nndiag.config import Task
    from nndiag.core.tensors import named_tensors

    classification = ctx.task is Task.CLASSIFICATION
    seen = ctx.inputs if ctx.inputs is not None else ctx.batch  # what reaches the model
    name = "inputs" if ctx.inputs is not None else "batch"
    rows = [_stats(n, t, None) for n, t in named_tensors(seen, name)]
    targets, ignore, label = ctx.targets, ctx.options.ignore_index, "targets"
    if targets is None:  # a training step: the targets as its loss reads them
        from nndiag.core.losses import observed_step

        call = observed_step(ctx, ctx.fresh_model())[1].loss_call
        if call is None:
            return Measurement(tuple(rows), (), classification, 0, 0, ignore, False)
        targets, ignore, label = call.target, call.ignore_index, f"targets ({call.name}'s)"
    keep = (targets != ignore) if classification else None
    rows.append(_stats(label, targets, keep))
    classes: tuple[Row, ...] = ()
    if classification:
        labels = targets[keep].flatten().long().cpu() if keep is not None else targets
        counts = torch.bincount(labels.clamp(min=0)).double()
        total = float(counts.sum())
        classes = tuple(
            {"class": c, "count": int(n), "fraction": float(n) / total}
            for c, n in enumerate(counts.tolist())
            if n > 0
        )
    counted = int(keep.sum()) if keep is not None else targets.numel()
    return Measurement(tuple(rows), classes, classification, counted, targets.numel(), ignore)


def diagnose(m: Measurement, config: Config) -> list[Finding]:
    findings = []
    for row in m.rows:
        if row["nonfinite"]:
            findings.append(
                finding(
                    Code.NONFINITE_VALUES,
                    NAME,
                    f"{row['tensor']} holds {row['nonfinite']} NaN/Inf values",
                    where=[row["tensor"]],
                    evidence={"nonfinite": row["nonfinite"]},
                    hint="Clean the data pipeline: NaN/Inf inputs poison every gradient.",
                )
            )
    for row in _off_scale(m, config):
        findings.append(
            finding(
                Code.INPUT_SCALE,
                NAME,
                f"{row['tensor']} has RMS {row['rms']:.3g} (mean {row['mean']:.3g}, std "
                f"{row['std']:.3g}), outside [{config.input_rms_min}, {config.input_rms_max}]",
                where=[row["tensor"]],
                evidence={k: row[k] for k in ("mean", "std", "min", "max", "rms")},
            )
        )
    if m.classification and m.target_elements and not m.target_values:
        return [
            *findings,
            finding(
                Code.IGNORED_TARGETS,
                NAME,
                f"every one of the {m.target_elements} targets equals ignore_index "
                f"({m.ignore_index}): the loss averages over no target (NaN, or 0 with a sum) and "
                "no parameter gets a gradient",
                where=["targets"],
                evidence={"ignore_index": m.ignore_index, "targets": m.target_elements},
            ),
        ]
    degenerate = _degenerate(m, config)
    if degenerate:
        findings.append(finding(Code.DEGENERATE_TARGETS, NAME, degenerate, where=["targets"]))
    return findings


def _off_scale(m: Measurement, config: Config) -> list[Row]:
    return [
        row
        for row in m.input_rows
        if row["dtype"].startswith(("float", "bfloat"))
        and math.isfinite(row["rms"])
        and not config.input_rms_min <= row["rms"] <= config.input_rms_max
    ]


def _majority(m: Measurement) -> Row | None:
    return max(m.classes, key=lambda r: r["count"], default=None)


def _degenerate(m: Measurement, config: Config) -> str:
    if not m.has_targets:
        return ""
    target = m.rows[-1]
    if m.classification:
        top = _majority(m)
        if (
            top is not None
            and m.target_values > 1
            and top["fraction"] > config.majority_fraction_max
        ):
            return (
                f"class {top['class']} is {top['fraction']:.0%} of the batch's "
                f"{m.target_values} targets"
            )
        return ""
    scale = abs(target["mean"]) + 1.0
    if m.target_values > 1 and target["std"] <= config.constant_target_rtol * scale:
        return f"regression targets are constant ({target['mean']:.4g}) across the batch"
    return ""


def _describe(row: Row) -> str:
    if "distinct" in row:  # token ids, masks: their range, not a scale
        return f"{row['tensor']} {row['dtype']} in [{row['min']:.0f}, {row['max']:.0f}]"
    return f"{row['tensor']} {row['dtype']} rms {row['rms']:.3g}"


def present(m: Measurement, config: Config) -> Presentation:
    off = {r["tensor"] for r in _off_scale(m, config)}
    highlights = [
        Highlight(i, "nonfinite", Severity.ERROR) for i, r in enumerate(m.rows) if r["nonfinite"]
    ]
    highlights += [
        Highlight(i, "rms", Severity.WARNING) for i, r in enumerate(m.rows) if r["tensor"] in off
    ]
    inputs = ", ".join(_describe(r) for r in m.input_rows)
    metrics: dict[str, object] = {"classification": m.classification}
    if not m.has_targets:
        targets = "targets: your training_step's loss reads none it names"
    elif m.classification:
        top = _majority(m)
        majority = top["fraction"] if top else 0.0
        metrics.update(classes_present=len(m.classes), majority_fraction=majority)
        plural = "class" if len(m.classes) == 1 else "classes"
        targets = f"{len(m.classes)} {plural} present, largest {majority:.0%}"
    else:
        t = m.rows[-1]
        targets = f"targets mean {t['mean']:.3g}, std {t['std']:.3g}"
    tables = [Table("tensors", m.rows, tuple(highlights), key="tensor")]
    if m.classes:
        tables.append(Table("classes", m.classes, key="class"))
    return Presentation(f"{inputs}; {targets}", metrics, tuple(tables))


SPEC = ProbeSpec(
    name=NAME,
    raises=(Code.NONFINITE_VALUES, Code.INPUT_SCALE, Code.DEGENERATE_TARGETS, Code.IGNORED_TARGETS),
    summary="input and target statistics, class histogram",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    cost=lambda c: 0.0,
    quick=True,
    order=20,
)
