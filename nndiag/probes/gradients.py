"""gradients: one forward and backward at init; per-parameter and per-module gradient health.

Rows follow forward execution order (modules the forward never called come last). Per parameter:
‖g‖, ‖W‖, the ratio ‖g‖/‖W‖ and the SGD update ratio lr·‖g‖/‖W‖ at lr = 1e-3 (cs231n: updates of
about 1e-3 of the weights are healthy). The depth profile compares the ratio of the weight matrices
near the input with those near the output. See docs/probes/gradients.md.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from torch import Tensor, nn

from nndiag.context import DEFAULT_LR, Context, call_model, eval_mode_backward
from nndiag.findings import Code, Finding, Severity, finding
from nndiag.hooks import execution_order, module_names
from nndiag.report import Highlight, ProbeResult, Row, Status, Table

NAME = "gradients"

# AutoTrainer (Zhang et al., ICSE 2021) flags vanishing gradients when the first layers' gradient
# scale is below 1e-3 of the last layers', and exploding when it is above 70 times. Each finding
# compares the quarters with the statistic least prone to false alarms: vanishing uses the best-fed
# matrix of the first quarter against the median of the last, exploding the median of the first
# against the best-fed of the last. Calibration: attention query/key weights get structurally tiny
# gradients at init (near-uniform attention) and a BERT classifier head gets ~300x the encoder's
# ratio; tiny BERTs with 2-6 layers then give 7e-3..1e-2 instead of 2e-3 for plain geometric means.
VANISH_FIRST_OVER_LAST = 1e-3
EXPLODE_FIRST_OVER_LAST = 70.0
# The profile needs enough weight matrices for "first quarter" and "last quarter" to mean depth.
MIN_PROFILE_LAYERS = 4
# ‖g‖/‖W‖ above 1e3 means one SGD step at lr 1e-3 would move a weight matrix by its whole norm
# (cs231n's healthy update ratio is ~1e-3, i.e. ‖g‖/‖W‖ ~ 1).
ABSURD_GRAD_WEIGHT_RATIO = 1e3
# Band for std(W)·sqrt(fan_in): He (ReLU) gives √2 ≈ 1.41, PyTorch's default kaiming_uniform(a=√5)
# gives 1/√3 ≈ 0.58, Glorot ≈ 1 for square layers. An unscaled randn init gives sqrt(fan_in)
# (16 for fan_in 256), so the upper bound is ≈ 2x He. The lower bound leaves room for GPT-2's
# deliberately small residual projections, std 0.02/√(2·n_layer): 0.054 for a 2-layer width-32
# GPT-2, 0.11 for GPT-2 small. Below 0.02 a layer shrinks its signal ≈ 50x more than He would.
INIT_GAIN_MIN = 0.02
INIT_GAIN_MAX = 3.0

PARAMETER_COLUMNS = (
    "parameter",
    "shape",
    "trainable",
    "grad_norm",
    "weight_norm",
    "ratio",
    "update_ratio",
    "init_gain",
)
_SKIP_INIT_SCALE = (
    nn.Embedding,
    nn.EmbeddingBag,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._NormBase,
)


def _fan_in(module: nn.Module, weight: Tensor) -> int | None:
    """Inputs feeding one output unit; Hugging Face's Conv1D stores its weight transposed."""
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return int(weight.shape[0])
    if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd, nn.Bilinear)) or (
        weight.dim() >= 2 and not isinstance(module, _SKIP_INIT_SCALE)
    ):
        return int(weight.shape[1] * math.prod(weight.shape[2:]))
    return None


def probe(ctx: Context) -> ProbeResult:
    model = ctx.fresh_model()
    model.zero_grad(set_to_none=True)
    with eval_mode_backward(model):  # the user's model may be in eval mode
        with execution_order(model) as order:
            loss = ctx.loss(call_model(model, ctx.inputs), ctx.targets)
        if loss.requires_grad:
            loss.backward()
    names = module_names(model)
    position = {m: i for i, m in enumerate(order)}
    modules = sorted(names, key=lambda m: position.get(m, len(order)))

    rows: list[Row] = []
    seen: set[int] = set()
    for module in modules:
        for pname, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # tied weights (e.g. GPT-2's lm_head) are listed once
                continue
            seen.add(id(param))
            rows.append(_param_row(names[module], module, pname, param, called=module in position))
    metrics = _profile_metrics(rows)
    findings, highlights = _diagnose(rows, metrics)
    return ProbeResult(
        NAME,
        Status.OK,
        metrics=metrics | {"loss": float(loss.detach())},
        tables=(
            Table("parameters", tuple(rows), tuple(highlights), display=PARAMETER_COLUMNS),
            Table("modules", tuple(_module_rows(rows))),
        ),
        findings=tuple(findings),
    )


def _param_row(module_name: str, module: nn.Module, pname: str, param: Tensor, called: bool) -> Row:
    weight_norm = float(param.detach().float().norm())
    grad = param.grad
    grad_norm = float(grad.float().norm()) if grad is not None else math.nan
    ratio = grad_norm / weight_norm if weight_norm > 0 and grad is not None else math.nan
    fan_in = _fan_in(module, param) if pname == "weight" and param.dim() >= 2 else None
    gain = float(param.detach().float().std()) * math.sqrt(fan_in) if fan_in else math.nan
    return {
        "parameter": f"{module_name}.{pname}",
        "module": module_name,
        "type": type(module).__name__,
        "shape": "x".join(map(str, param.shape)),
        "trainable": param.requires_grad,
        "has_grad": grad is not None,
        "called": called,
        "grad_norm": grad_norm,
        "weight_norm": weight_norm,
        "ratio": ratio,
        "update_ratio": DEFAULT_LR * ratio,
        "init_gain": gain,
        "numel": param.numel(),
        "zero_grad": param.requires_grad and (grad is None or not bool((grad != 0).any())),
        "in_profile": fan_in is not None,
    }


def _module_rows(rows: list[Row]) -> list[Row]:
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row["module"], []).append(row)
    result = []
    for module, members in grouped.items():
        grad = math.sqrt(
            sum(r["grad_norm"] ** 2 for r in members if not math.isnan(r["grad_norm"]))
        )
        weight = math.sqrt(sum(r["weight_norm"] ** 2 for r in members))
        result.append(
            {
                "module": module,
                "type": members[0]["type"],
                "params": sum(r["numel"] for r in members),
                "grad_norm": grad,
                "weight_norm": weight,
                "ratio": grad / weight if weight > 0 else math.nan,
            }
        )
    return result


def _profile(rows: list[Row]) -> list[Row]:
    """Weight matrices of Linear/Conv-like layers with a usable ratio, in forward order."""
    return [r for r in rows if r["in_profile"] and r["trainable"] and r["ratio"] > 0]


def _profile_metrics(rows: list[Row]) -> dict[str, Any]:
    layers = _profile(rows)
    if len(layers) < MIN_PROFILE_LAYERS or not all(math.isfinite(r["ratio"]) for r in layers):
        return {"profile_layers": len(layers)}
    quarter = max(1, len(layers) // 4)
    first = [r["ratio"] for r in layers[:quarter]]
    last = [r["ratio"] for r in layers[-quarter:]]
    # Least-squares slope of log10(ratio) against layer index: decades gained per layer toward
    # the output (positive = gradient shrinks toward the input).
    xs = list(range(len(layers)))
    ys = [math.log10(r["ratio"]) for r in layers]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return {
        "profile_layers": len(layers),
        "vanishing_ratio": max(first) / statistics.median(last),
        "exploding_ratio": statistics.median(first) / max(last),
        "log10_slope_per_layer": slope,
    }


def _diagnose(rows: list[Row], metrics: dict[str, Any]) -> tuple[list[Finding], list[Highlight]]:
    findings: list[Finding] = []
    highlights: list[Highlight] = []
    index = {r["parameter"]: i for i, r in enumerate(rows)}

    def mark(selected: list[Row], column: str, severity: Severity) -> None:
        highlights.extend(Highlight(index[r["parameter"]], column, severity) for r in selected)

    nonfinite = [r for r in rows if r["has_grad"] and not math.isfinite(r["grad_norm"])]
    if nonfinite:
        mark(nonfinite, "grad_norm", Severity.ERROR)
        findings.append(
            finding(
                Code.NONFINITE_VALUES,
                NAME,
                f"{len(nonfinite)} parameter gradient(s) are NaN/Inf",
                where=[r["parameter"] for r in nonfinite],
            )
        )

    dead = [r for r in rows if r["zero_grad"]]
    if dead:
        mark(dead, "grad_norm", Severity.ERROR)
        uncalled = sorted({r["module"] for r in dead if not r["called"]})
        detail = f" (modules never called: {', '.join(uncalled)})" if uncalled else ""
        findings.append(
            finding(
                Code.NO_GRADIENT,
                NAME,
                f"{len(dead)} trainable parameter tensor(s) in {len({r['module'] for r in dead})} "
                f"module(s) get no or an exactly zero gradient{detail}",
                where=sorted({r["module"] for r in dead}),
                evidence={"parameters": [r["parameter"] for r in dead]},
            )
        )

    frozen = [r for r in rows if not r["trainable"]]
    if frozen:
        share = sum(r["numel"] for r in frozen) / max(1, sum(r["numel"] for r in rows))
        everything = len(frozen) == len(rows)  # then nothing trains at all: an error
        mark(frozen, "trainable", Severity.ERROR if everything else Severity.WARNING)
        findings.append(
            finding(
                Code.FROZEN_PARAMETERS,
                NAME,
                "every parameter has requires_grad=False: nothing will train"
                if everything
                else f"{share:.0%} of the parameters ({len(frozen)} tensors) have "
                "requires_grad=False",
                where=sorted({r["module"] for r in frozen}),
                evidence={"frozen_share": share},
                severity=Severity.ERROR if everything else None,
            )
        )

    vanishing = metrics.get("vanishing_ratio")
    if vanishing is not None and vanishing < VANISH_FIRST_OVER_LAST:
        findings.append(
            finding(
                Code.VANISHING_GRADIENTS,
                NAME,
                f"the best-fed of the first layers gets ‖g‖/‖W‖ {vanishing:.2g}x the last layers' "
                f"median (threshold {VANISH_FIRST_OVER_LAST:g}); slope "
                f"{metrics['log10_slope_per_layer']:.2g} decades per layer",
                evidence=metrics,
            )
        )
    exploding = metrics.get("exploding_ratio")
    if exploding is not None and exploding > EXPLODE_FIRST_OVER_LAST:
        findings.append(
            finding(
                Code.EXPLODING_GRADIENTS,
                NAME,
                f"the first layers' median ‖g‖/‖W‖ is {exploding:.3g}x the best-fed of the last "
                f"layers (threshold {EXPLODE_FIRST_OVER_LAST:g})",
                evidence=metrics,
            )
        )
    absurd = [
        r
        for r in rows
        if r["trainable"] and r["ratio"] > ABSURD_GRAD_WEIGHT_RATIO and math.isfinite(r["ratio"])
    ]
    if absurd:
        mark(absurd, "ratio", Severity.ERROR)
        findings.append(
            finding(
                Code.EXPLODING_GRADIENTS,
                NAME,
                f"‖g‖/‖W‖ above {ABSURD_GRAD_WEIGHT_RATIO:g} in {len(absurd)} tensor(s): one step "
                f"at lr {DEFAULT_LR:g} would move them by more than their own norm",
                where=[r["parameter"] for r in absurd],
            )
        )

    profiled = [r for r in rows if r["in_profile"] and r["weight_norm"] > 0]
    output_layer = profiled[-1]["parameter"] if profiled else None
    off = [
        r
        for r in profiled
        if r["init_gain"] > INIT_GAIN_MAX
        or (r["init_gain"] < INIT_GAIN_MIN and r["parameter"] != output_layer)
    ]
    if off:
        mark(off, "init_gain", Severity.WARNING)
        worst = max(off, key=lambda r: abs(math.log(r["init_gain"])))
        findings.append(
            finding(
                Code.INIT_SCALE,
                NAME,
                f"{len(off)} weight matrix(es) have std·sqrt(fan_in) outside [{INIT_GAIN_MIN}, "
                f"{INIT_GAIN_MAX}] (worst {worst['parameter']}: {worst['init_gain']:.3g})",
                where=[r["parameter"] for r in off],
                evidence={r["parameter"]: r["init_gain"] for r in off},
            )
        )
    return findings, highlights
