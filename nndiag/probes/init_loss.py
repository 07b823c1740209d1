"""init-loss: the loss at initialization against the chance baseline, and silent loss bugs.

Karpathy, "A Recipe for Training Neural Networks" (2019): verify the loss at init. For C-way
cross-entropy with uninformative logits the loss is ln C; for MSE it is the target variance (the
loss of predicting the mean). The loss call is observed with a TorchFunctionMode, so the checks see
what the user's `loss_fn` really calls (cross_entropy, log_softmax, mse_loss, broadcasting ops).
See docs/probes/init-loss.md.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from nndiag.context import Context, as_logits, call_model, map_tensors, tensors_in
from nndiag.findings import Code, Finding, finding
from nndiag.hooks import ForwardHook, forward_hooks, module_names
from nndiag.losses import (
    LOG_SOFTMAX_LOSSES,
    LOGIT_SIGMOID_LOSSES,
    chance_baseline,
    observe_loss,
)
from nndiag.report import ProbeResult, Status, Table

NAME = "init-loss"

# For iid N(0, σ²) logits, E[CE] ≈ ln C + σ²/2 (second-order expansion of logsumexp), so an excess
# of 2 nats over ln C means logits with std ≈ 2: overconfident at init (Karpathy's 27 vs 3.3 for
# 27 classes is an excess of 24 nats). Healthy default inits stay well below 0.5 nats.
CE_EXCESS_NATS_MAX = 2.0
# MSE at init = var(y) + (mean offset)² + var(f(x)); a ratio of 4 means outputs whose spread is
# about √3 times the target's: the output layer's scale is off.
MSE_RATIO_MAX = 4.0
# Rows of non-negative outputs that sum to 1 within this tolerance are probabilities.
PROBABILITY_SUM_ATOL = 1e-4
# Outputs for two independent input batches that agree to this relative precision are identical.
SAME_OUTPUT_RTOL = 1e-6


def _record_nonfinite(names: dict[nn.Module, str], first: list[str]) -> ForwardHook:
    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        if not first and any(
            t.is_floating_point() and not torch.isfinite(t).all() for t in tensors_in(output)
        ):
            first.append(names[module])

    return hook


def _other_inputs(inputs: Any, generator: torch.Generator) -> Any:
    """An independent batch of the same structure: matching mean/std, or the same integer range."""

    def redraw(t: Tensor) -> Tensor:
        if t.is_floating_point():
            noise = torch.randn(t.shape, generator=generator).to(t.device, t.dtype)
            return noise * t.std().nan_to_num(1.0) + t.mean().nan_to_num(0.0)
        if t.dtype == torch.bool:
            return t
        low, high = int(t.min()), int(t.max())
        fresh = torch.randint(low, high + 1, t.shape, generator=generator).to(t.device, t.dtype)
        return fresh if high > low else t

    return map_tensors(redraw, inputs)


def is_probability(logits: Tensor) -> bool:
    if logits.dim() == 0 or logits.shape[-1] < 2 or not logits.is_floating_point():
        return False
    rows = logits.detach().float()
    sums = rows.sum(dim=-1)
    return bool(
        (rows >= 0).all() and torch.allclose(sums, torch.ones_like(sums), atol=PROBABILITY_SUM_ATOL)
    )


def probe(ctx: Context) -> ProbeResult:
    model = ctx.fresh_model()
    names = module_names(model)
    first_nonfinite: list[str] = []
    hook = _record_nonfinite(names, first_nonfinite)
    with forward_hooks({m: hook for m in model.modules()}), torch.no_grad():
        outputs = call_model(model, ctx.inputs)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loss_tensor, observer = observe_loss(ctx, outputs, ctx.targets)
    loss = float(loss_tensor)
    logits = as_logits(outputs).detach().float()
    findings: list[Finding] = []

    if not math.isfinite(loss) or not torch.isfinite(logits).all():
        where = first_nonfinite or ["loss"]
        findings.append(
            finding(
                Code.NONFINITE_VALUES,
                NAME,
                f"non-finite {'outputs' if first_nonfinite else 'loss'} at init; first non-finite "
                f"module output: {where[0]}",
                where=where,
                evidence={"loss": loss},
            )
        )

    baseline, kind = dataclasses.astuple(chance_baseline(observer.calls, logits, ctx.targets))
    ratio = loss / baseline if baseline > 0 else math.nan
    if kind.startswith("ln C") and loss - baseline > CE_EXCESS_NATS_MAX:
        findings.append(
            finding(
                Code.LOSS_AT_INIT,
                NAME,
                f"cross-entropy at init is {loss:.3g}, {loss - baseline:.2g} nats above chance "
                f"ln {logits.shape[-1]} = {baseline:.3g}: logits are overconfident (std "
                f"{float(logits.std()):.3g})",
                evidence={"loss": loss, "baseline": baseline, "logit_std": float(logits.std())},
            )
        )
    elif kind.startswith("target") and ratio > MSE_RATIO_MAX:
        findings.append(
            finding(
                Code.LOSS_AT_INIT,
                NAME,
                f"MSE at init is {loss:.3g}, {ratio:.3g}x the target variance {baseline:.3g}",
                evidence={"loss": loss, "baseline": baseline, "ratio": ratio},
            )
        )

    probabilities = is_probability(logits)
    in_unit_interval = bool(((logits >= 0) & (logits <= 1)).all())
    if probabilities and observer.calls & LOG_SOFTMAX_LOSSES:
        applied = sorted(observer.calls & LOG_SOFTMAX_LOSSES)
        findings.append(
            finding(
                Code.DOUBLE_SOFTMAX,
                NAME,
                "outputs are already probabilities (non-negative, rows sum to 1) and the loss "
                f"applies {', '.join(applied)} again",
                evidence={"loss_calls": applied},
            )
        )
    elif in_unit_interval and observer.calls & LOGIT_SIGMOID_LOSSES:
        findings.append(
            finding(
                Code.DOUBLE_SOFTMAX,
                NAME,
                "outputs are already in [0, 1] (a sigmoid) and the loss is "
                "binary_cross_entropy_with_logits, which applies the sigmoid again",
                hint="Remove the final sigmoid, or use binary_cross_entropy on probabilities.",
            )
        )

    broadcast_warnings = [str(w.message) for w in caught if "broadcast" in str(w.message)]
    examples = observer.broadcasts[:3] or broadcast_warnings[:1]
    if examples:
        findings.append(
            finding(
                Code.LOSS_BROADCAST,
                NAME,
                f"the loss broadcasts outputs {list(logits.shape)} against targets "
                f"{list(ctx.targets.shape)}: {'; '.join(examples)}",
                evidence={"calls": observer.broadcasts, "warnings": broadcast_warnings},
            )
        )

    same = _ignores_input(model, ctx)
    if same:
        findings.append(
            finding(
                Code.OUTPUT_IGNORES_INPUT,
                NAME,
                "outputs are identical for two independent input batches (eval mode)",
            )
        )

    row = {
        "loss": loss,
        "baseline": baseline,
        "baseline_kind": kind,
        "ratio": ratio,
        "excess": loss - baseline,
        "logit_mean": float(logits.mean()),
        "logit_std": float(logits.std()) if logits.numel() > 1 else 0.0,
        "outputs_are_probabilities": probabilities,
        "output_ignores_input": same,
        "loss_calls": ", ".join(sorted(n for n in observer.calls if _is_loss_call(n))),
    }
    return ProbeResult(
        NAME,
        Status.OK,
        metrics={"loss": loss, "baseline": baseline, "ratio": ratio},
        tables=(Table("loss", (row,)),),
        findings=tuple(findings),
    )


def _is_loss_call(name: str) -> bool:
    return name.endswith(("_loss", "softmax", "cross_entropy", "entropy_with_logits"))


def _ignores_input(model: nn.Module, ctx: Context) -> bool:
    """Karpathy's input-independent baseline: do two independent batches give the same output?"""
    model.eval()  # dropout off: identical outputs must come from the model, not from chance
    generator = torch.Generator().manual_seed(ctx.options.seed + 1)
    other = _other_inputs(ctx.inputs, generator)
    if all(
        torch.equal(a, b) for a, b in zip(tensors_in(ctx.inputs), tensors_in(other), strict=True)
    ):
        return False  # nothing to vary (e.g. constant integer inputs): no evidence either way
    with torch.no_grad():
        first = as_logits(call_model(model, ctx.inputs)).detach().float()
        second = as_logits(call_model(model, other)).detach().float()
    if first.shape != second.shape or not torch.isfinite(first).all():
        return False
    scale = float(first.abs().max()) + 1e-12
    return float((first - second).abs().max()) <= SAME_OUTPUT_RTOL * scale
