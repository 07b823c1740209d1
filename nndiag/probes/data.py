"""data: statistics of one batch of inputs and targets.

Findings: `input-scale` (float inputs far from zero-mean, unit-scale), `degenerate-targets`
(constant regression targets, or one class for nearly the whole batch), `nonfinite-values`
(NaN/Inf in inputs or targets). Integer inputs (token ids) and booleans (masks) are described but
never scale-checked. See docs/probes/data.md.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from nndiag.config import Task
from nndiag.context import Context
from nndiag.findings import Code, Finding, Severity, finding
from nndiag.losses import IGNORE_INDEX
from nndiag.report import Highlight, ProbeResult, Row, Status, Table

NAME = "data"

# LeCun et al. 1998, "Efficient BackProp" §4.3: inputs should be centred with roughly unit variance.
# The RMS sqrt(mean² + std²) folds both into one scale: raw 0..255 pixels give ≈ 147, pixels/255
# ≈ 0.6, standardised data ≈ 1. The band leaves an order of magnitude either side of unit scale.
INPUT_RMS_MAX = 10.0
INPUT_RMS_MIN = 0.01
# One class for more than 90% of a batch: 15 of 16 examples. Under balanced classes this has
# probability below 1e-3 for C >= 2, so it means a broken label pipeline or extreme imbalance.
MAJORITY_FRACTION_MAX = 0.9
# Regression targets whose std is below this fraction of their scale count as constant.
CONSTANT_TARGET_RTOL = 1e-6


def _named_tensors(obj: Any, prefix: str) -> list[tuple[str, Tensor]]:
    if isinstance(obj, Tensor):
        return [(prefix, obj)]
    if isinstance(obj, dict):
        return [pair for k, v in obj.items() for pair in _named_tensors(v, f"{prefix}.{k}")]
    if isinstance(obj, (tuple, list)):
        return [pair for i, v in enumerate(obj) for pair in _named_tensors(v, f"{prefix}[{i}]")]
    return []


def tensor_stats(name: str, t: Tensor) -> Row:
    x = t.detach().double()
    finite = x[torch.isfinite(x)]
    stats: Row = {
        "tensor": name,
        "dtype": str(t.dtype).removeprefix("torch."),
        "shape": "x".join(map(str, t.shape)),
        "mean": finite.mean().item() if finite.numel() else math.nan,
        "std": finite.std().item() if finite.numel() > 1 else 0.0,
        "min": finite.min().item() if finite.numel() else math.nan,
        "max": finite.max().item() if finite.numel() else math.nan,
        "nonfinite": int(x.numel() - finite.numel()),
    }
    stats["rms"] = math.sqrt(stats["mean"] ** 2 + stats["std"] ** 2) if finite.numel() else math.nan
    if not t.is_floating_point():
        stats["distinct"] = int(torch.unique(t).numel())
    return stats


def probe(ctx: Context) -> ProbeResult:
    rows = [tensor_stats(n, t) for n, t in _named_tensors(ctx.inputs, "inputs")]
    rows.append(tensor_stats("targets", ctx.targets))
    findings: list[Finding] = []
    highlights: list[Highlight] = []

    for i, row in enumerate(rows):
        if row["nonfinite"]:
            highlights.append(Highlight(i, "nonfinite", Severity.ERROR))
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
    for i, row in enumerate(rows[:-1]):
        scale_known = row["dtype"].startswith(("float", "bfloat")) and not math.isnan(row["rms"])
        if scale_known and not INPUT_RMS_MIN <= row["rms"] <= INPUT_RMS_MAX:
            highlights.append(Highlight(i, "rms", Severity.WARNING))
            findings.append(
                finding(
                    Code.INPUT_SCALE,
                    NAME,
                    f"{row['tensor']} has RMS {row['rms']:.3g} (mean {row['mean']:.3g}, std "
                    f"{row['std']:.3g}), outside [{INPUT_RMS_MIN}, {INPUT_RMS_MAX}]",
                    where=[row["tensor"]],
                    evidence={k: row[k] for k in ("mean", "std", "min", "max", "rms")},
                )
            )

    histogram: tuple[Row, ...] = ()
    metrics: dict[str, Any] = {"task": ctx.task.value}
    if ctx.task is Task.CLASSIFICATION:
        labels = ctx.targets[ctx.targets != IGNORE_INDEX].flatten().long().cpu()
        classes, counts = torch.unique(labels, return_counts=True)
        total = int(counts.sum())
        histogram = tuple(
            {"class": int(c), "count": int(n), "fraction": int(n) / total}
            for c, n in zip(classes, counts, strict=True)
        )
        majority = max((r["fraction"] for r in histogram), default=0.0)
        metrics.update(classes_present=len(histogram), majority_fraction=majority)
        if total > 1 and majority > MAJORITY_FRACTION_MAX:
            top = max(histogram, key=lambda r: r["count"])
            findings.append(
                finding(
                    Code.DEGENERATE_TARGETS,
                    NAME,
                    f"class {top['class']} is {majority:.0%} of the batch's {total} targets",
                    where=["targets"],
                    evidence={"classes_present": len(histogram), "majority": majority},
                )
            )
    else:
        target = rows[-1]
        scale = abs(target["mean"]) + 1.0
        if ctx.targets.numel() > 1 and target["std"] <= CONSTANT_TARGET_RTOL * scale:
            highlights.append(Highlight(len(rows) - 1, "std", Severity.WARNING))
            findings.append(
                finding(
                    Code.DEGENERATE_TARGETS,
                    NAME,
                    f"regression targets are constant ({target['mean']:.4g}) across the batch",
                    where=["targets"],
                    evidence={"mean": target["mean"], "std": target["std"]},
                )
            )

    tables = [Table("tensors", tuple(rows), tuple(highlights))]
    if histogram:
        tables.append(Table("classes", histogram))
    return ProbeResult(
        NAME, Status.OK, metrics=metrics, tables=tuple(tables), findings=tuple(findings)
    )
