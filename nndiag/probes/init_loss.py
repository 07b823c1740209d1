"""init-loss: the loss at initialization against the chance baseline, and silent loss bugs.

Karpathy, "A Recipe for Training Neural Networks" (2019): verify the loss at init. For C-way
cross-entropy with uninformative logits the loss is ln C; for MSE it is the target variance (the
loss of predicting the mean). The loss call is observed with a TorchFunctionMode, so the checks see
what the user's `loss_fn` really calls (cross_entropy, log_softmax, mse_loss, broadcasting ops).

Output that ignores the input (Karpathy's input-independent baseline): redrawing each input tensor
alone (token ids by replacement, floats by noise) leaves the output unchanged, in train mode with
the same dropout draws (nndiag.core.dependence). A model whose output is zero at init by design (a
zero-initialised output layer, a gated residual branch) also does that, so the verdict is taken
again on a copy a few optimizer steps into training: only an output that still ignores its input
is the error. Probabilities fed to a (log-)softmax loss, or to nll_loss without a log, are
`double-softmax`, over the last axis or the class axis 1 of a dense output.
See docs/probes/init-loss.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nndiag.findings import Code, Finding, Severity, finding
from nndiag.probes.base import Presentation, ProbeSpec, setting
from nndiag.probes.provisions import InitLoss
from nndiag.report import Table

if TYPE_CHECKING:
    from torch import Tensor, nn

    from nndiag.core.context import Context
    from nndiag.core.losses import BaselineKind

NAME = "init-loss"


@dataclass(frozen=True)
class Config:
    ce_excess_nats_max: float = setting(
        2.0,
        "cross-entropy at init more than this many nats above ln C is overconfident",
        source="E[CE] ≈ ln C + σ²/2 for iid N(0, σ²) logits: 2 nats is logit std ≈ 2 (Karpathy's "
        "27-class example is 24 nats above); healthy default inits stay below 0.5",
        low=0.0,
    )
    mse_ratio_max: float = setting(
        4.0,
        "MSE at init above this multiple of the target variance means a mis-scaled output layer",
        source="MSE = var(y) + offset² + var(f(x)), judged without the offset of the means (the "
        "output bias learns it at once): 4x is an output spread √3 times the target's",
        low=1.0,
    )
    probability_sum_atol: float = setting(
        1e-4,
        "non-negative output rows summing to 1 within this tolerance are probabilities",
        source="float32 softmax round-off",
        low=0.0,
    )
    same_output_rtol: float = setting(
        1e-6,
        "outputs for two independent batches agreeing to this relative precision are identical",
        source="float32 round-off",
        low=0.0,
    )


@dataclass(frozen=True)
class Measurement:
    loss: float
    baseline: float
    baseline_kind: BaselineKind
    classes: int
    logit_mean: float
    logit_std: float
    finite_outputs: bool
    first_nonfinite: str  # module name, or "" when the outputs are finite
    probabilities: bool  # cross_entropy reads probabilities (non-negative, summing to 1 over C)
    probabilities_to_nll: bool  # nll_loss reads probabilities where log-probabilities belong
    unit_interval: bool  # every output in [0, 1]
    loss_calls: tuple[str, ...]
    broadcasts: tuple[str, ...]
    output_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    ignores_input: bool  # at init
    ignores_after_steps: bool | None  # None: not measured (the output depends on the input)
    head: str  # the output layer: the last Linear/Conv-like layer to run
    head_convention: str  # its fan-out initialisation convention, or ""
    offset_sq: float = math.nan  # MSE: (mean prediction - mean target)², NaN for other losses


def _observe(ctx: Context, model: nn.Module) -> tuple[float, Any, Any, str, list[str]]:
    """One training step without gradient, watched: its loss (the whole batch's under
    torchrun), what the loss called (outside the model's own forward), the root module's
    outputs, the first module with a non-finite output, and any broadcasting warnings."""
    import warnings

    import torch

    from nndiag.core.hooks import forward_hooks, module_names
    from nndiag.core.losses import LossObserver
    from nndiag.core.reduce import mean
    from nndiag.core.tensors import tensors_in

    names = module_names(model)
    first: list[str] = []

    def record(module: Any, _inputs: Any, output: Any) -> None:
        floats = [t for t in tensors_in(output) if t.is_floating_point()]
        if not first and any(not torch.isfinite(t).all() for t in floats):
            first.append(names[module])

    observer = LossObserver()
    with (
        forward_hooks(dict.fromkeys(model.modules(), record)),
        torch.no_grad(),
        warnings.catch_warnings(record=True) as caught,
        observer.watching(model),
    ):
        warnings.simplefilter("always")
        run = ctx.run_step(model)
    loss = mean(ctx.reduce, float(run.loss.detach().float().reshape(())))
    broadcast_warnings = [str(w.message) for w in caught if "broadcast" in str(w.message)]
    return loss, observer, run.outputs, first[0] if first else "", broadcast_warnings


def measure(ctx: Context, config: Config) -> Measurement:
    import torch

    from nndiag.core.contract import primary_output
    from nndiag.core.losses import BaselineKind, chance_baseline

    model = ctx.fresh_model()
    loss, observer, outputs, first, warned = _observe(ctx, model)
    call = observer.loss_call
    # What the loss scores: the input of its loss call (the logits cross_entropy reads), else
    # the model's main output.
    scored = call.input if call is not None else primary_output(outputs)
    logits = scored.detach().float() if scored is not None else torch.zeros(0)
    baseline = chance_baseline(observer, ctx.reduce)
    finite = bool(torch.isfinite(logits).all())
    squashed = {
        name for name, read in observer.softmax_reads.items()
        if _are_probabilities(read.float(), config.probability_sum_atol, name == "log_softmax")
    }  # fmt: skip
    head, convention = _output_layer(model, ctx)
    ignores, after = _ignoring(ctx, model, config)
    classes = logits.shape[1] if logits.dim() >= 2 else (logits.shape[0] if logits.dim() else 1)
    return Measurement(
        loss=loss,
        baseline=baseline.value,
        baseline_kind=baseline.kind,
        classes=int(classes),
        logit_mean=float(logits.mean()) if finite and logits.numel() else math.nan,
        logit_std=float(logits.std()) if finite and logits.numel() > 1 else 0.0,
        finite_outputs=finite,
        first_nonfinite=first,
        probabilities=bool(squashed & {"cross_entropy", "log_softmax"}),
        probabilities_to_nll="nll_loss" in squashed,
        unit_interval=bool(logits.numel()) and bool(((logits >= 0) & (logits <= 1)).all()),
        loss_calls=tuple(observer.loss_calls),
        broadcasts=tuple(observer.broadcasts[:3] or warned[:1]),
        output_shape=tuple(logits.shape),
        target_shape=tuple(call.target.shape) if call is not None else (),
        ignores_input=ignores,
        ignores_after_steps=after,
        head=head,
        head_convention=convention,
        offset_sq=_offset_sq(ctx, call) if baseline.kind is BaselineKind.VARIANCE else math.nan,
    )


def _offset_sq(ctx: Context, call: Any) -> float:
    """(mean prediction - mean target)² over the whole batch: the part of an MSE at init that a
    constant, the output bias, removes within a few steps."""
    from nndiag.core.reduce import mean

    predicted = mean(ctx.reduce, float(call.input.detach().double().mean()))
    return (predicted - mean(ctx.reduce, float(call.target.double().mean()))) ** 2


def _ignoring(ctx: Context, model: nn.Module, config: Config) -> tuple[bool, bool | None]:
    """Does the output ignore every input at init, and (only then, when the model trains) still
    after the confirmation steps? Agreed across ranks."""
    from nndiag.core.reduce import all_true
    from nndiag.core.training import after_steps

    ignores = all_true(ctx.reduce, _ignores_input(model, ctx, config.same_output_rtol))
    if not (ignores and ctx.trainable):
        return ignores, None
    trained = after_steps(ctx).model
    return ignores, all_true(ctx.reduce, _ignores_input(trained, ctx, config.same_output_rtol))


def _are_probabilities(logits: Tensor, atol: float, last_axis: bool = False) -> bool:
    """Non-negative and summing to 1 over the class axis: dim 1 of (N, C, ...) as cross_entropy
    and nll_loss read it (the only axis of a 1-D input), or the last axis, where log_softmax is
    usually applied."""
    import torch

    if logits.dim() == 0 or not bool((logits >= 0).all()):
        return False
    axis = logits.dim() - 1 if last_axis or logits.dim() == 1 else 1
    if logits.shape[axis] < 2:
        return False
    sums = logits.sum(dim=axis)
    return torch.allclose(sums, torch.ones_like(sums), rtol=0.0, atol=atol)


def _output_layer(model: nn.Module, ctx: Context) -> tuple[str, str]:
    """The last layer with a weight matrix to run, and its fan-out convention (if any)."""
    import torch

    from nndiag.core.hooks import execution_order, module_names
    from nndiag.core.inits import fan_out_convention

    with execution_order(model) as order:
        ctx.forward(model)
    from nndiag.distributed import local

    for module in reversed(order):
        weight = getattr(module, "weight", None)
        if (
            isinstance(weight, torch.Tensor)
            and weight.dim() >= 2
            and not isinstance(module, torch.nn.Embedding)
        ):
            std = float(local(weight).detach().double().std())  # a shard's std under FSDP2
            return module_names(model)[module], fan_out_convention(module, tuple(weight.shape), std)
    return "", ""


def _ignores_input(model: nn.Module, ctx: Context, rtol: float) -> bool:
    """Does no input, redrawn alone (token ids by replacement, floats by noise, every entry of
    a dict or tuple), change the output? In train mode, as training runs, with the same RNG
    state for every forward so that dropout cannot pass for a dependence."""
    from nndiag.core.dependence import any_input_varies, input_that_moves_output

    if ctx.inputs is None or not any_input_varies(ctx.inputs):
        return False  # nothing to vary (one constant token, no inputs seen): no evidence
    model.train()
    return input_that_moves_output(model, ctx.inputs, rtol, ctx.options.seed + 1) is None


def diagnose(m: Measurement, config: Config) -> list[Finding]:
    findings = []
    if not math.isfinite(m.loss) or not m.finite_outputs:
        where = m.first_nonfinite or "loss"
        findings.append(
            finding(
                Code.NONFINITE_VALUES,
                NAME,
                f"non-finite {'outputs' if m.first_nonfinite else 'loss'} at init; first "
                f"non-finite module output: {where}",
                where=[where],
                evidence={"loss": m.loss},
            )
        )
    findings += _loss_scale(m, config)
    findings += _loss_bugs(m)
    if m.ignores_input and m.ignores_after_steps is not False:
        findings.append(
            finding(
                Code.OUTPUT_IGNORES_INPUT,
                NAME,
                "the output does not change when any input is redrawn (each tensor alone, train "
                "mode, same dropout draws)"
                + (", also after a few training steps" if m.ignores_after_steps else ""),
            )
        )
    elif m.ignores_input:
        findings.append(
            finding(
                Code.GATED_AT_INIT,
                NAME,
                "the output does not depend on the input at init (a zero-initialised output "
                "layer or gate?), and does after a few training steps: gradients flow",
            )
        )
    return findings


def _loss_scale(m: Measurement, config: Config) -> list[Finding]:
    from nndiag.core.losses import BaselineKind

    excess = m.loss - m.baseline
    if m.baseline_kind is BaselineKind.CHANCE and excess > config.ce_excess_nats_max:
        message = (
            f"cross-entropy at init is {m.loss:.3g}, {excess:.2g} nats above chance "
            f"ln {m.classes} = {m.baseline:.3g}: logits are overconfident (std {m.logit_std:.3g})"
        )
        evidence = {"loss": m.loss, "baseline": m.baseline, "logit_std": m.logit_std}
        if m.head_convention:  # timm's fan-out classifier init with few classes: by convention
            return [
                finding(
                    Code.LOSS_AT_INIT,
                    NAME,
                    f"{message}, from {m.head}'s fan-out initialisation ({m.head_convention}), a "
                    f"documented convention that is large when there are few classes",
                    where=[m.head],
                    evidence=evidence,
                    severity=Severity.INFO,
                    hint="It trains; to start at chance, zero-initialise the output layer.",
                )
            ]
        return [
            finding(
                Code.LOSS_AT_INIT,
                NAME,
                message,
                where=[m.head] if m.head else [],
                evidence=evidence,
            )
        ]
    # MSE = var(y - f) + offset²: the offset (targets far from zero-centred, as images in
    # [-1, 1] on a -1 background) is learnt by the output bias at once, not a mis-scaled layer.
    offset_sq = m.offset_sq if math.isfinite(m.offset_sq) else 0.0
    ratio = (m.loss - offset_sq) / m.baseline if m.baseline > 0 else math.nan
    if m.baseline_kind is BaselineKind.VARIANCE and ratio > config.mse_ratio_max:
        offset = f" ({m.loss - offset_sq:.3g} without the offset of the means)" if offset_sq else ""
        return [
            finding(
                Code.LOSS_AT_INIT,
                NAME,
                f"MSE at init is {m.loss:.3g}{offset}, {ratio:.3g}x the target variance "
                f"{m.baseline:.3g}",
                evidence={
                    "loss": m.loss,
                    "baseline": m.baseline,
                    "ratio": ratio,
                    "offset_sq": offset_sq,
                },
            )
        ]
    return []


def _loss_bugs(m: Measurement) -> list[Finding]:
    findings = []
    if m.probabilities:
        applied = sorted({"cross_entropy", "log_softmax"} & set(m.loss_calls))
        findings.append(
            finding(
                Code.DOUBLE_SOFTMAX,
                NAME,
                "outputs are already probabilities (non-negative, rows sum to 1) and the loss "
                f"applies {', '.join(applied)} again",
                evidence={"loss_calls": applied},
            )
        )
    elif m.probabilities_to_nll:
        findings.append(
            finding(
                Code.DOUBLE_SOFTMAX,
                NAME,
                "nll_loss reads probabilities (non-negative, summing to 1 over the classes), where "
                f"it expects log-probabilities: the loss at init is {m.loss:.3g} (about -1/C, "
                "where log-probabilities give about ln C)",
                evidence={"loss_calls": ["nll_loss"], "loss": m.loss},
                hint="Take log_softmax in the model (not softmax) before NLLLoss, or return logits "
                "and use cross_entropy.",
            )
        )
    elif m.unit_interval and "binary_cross_entropy_with_logits" in m.loss_calls:
        findings.append(
            finding(
                Code.DOUBLE_SOFTMAX,
                NAME,
                "outputs are already in [0, 1] (a sigmoid) and the loss is "
                "binary_cross_entropy_with_logits, which applies the sigmoid again",
                hint="Remove the final sigmoid, or use binary_cross_entropy on probabilities.",
            )
        )
    if m.broadcasts:
        findings.append(
            finding(
                Code.LOSS_BROADCAST,
                NAME,
                f"the loss broadcasts outputs {list(m.output_shape)} against targets "
                f"{list(m.target_shape)}: {'; '.join(m.broadcasts)}",
                evidence={"calls": list(m.broadcasts)},
            )
        )
    return findings


def present(m: Measurement, config: Config) -> Presentation:
    ratio = m.loss / m.baseline if m.baseline > 0 else math.nan
    row = {
        "loss": m.loss,
        "baseline": m.baseline,
        "baseline_kind": m.baseline_kind,
        "ratio": ratio,
        "excess": m.loss - m.baseline,
        "logit_mean": m.logit_mean,
        "logit_std": m.logit_std,
        "outputs_are_probabilities": m.probabilities,
        "output_ignores_input": m.ignores_input and m.ignores_after_steps is not False,
        "loss_calls": ", ".join(m.loss_calls),
    }
    if math.isfinite(m.baseline):
        headline = (
            f"loss {m.loss:.4g} vs chance {m.baseline:.4g} ({m.baseline_kind}), ratio {ratio:.3g}"
        )
    else:
        headline = (
            f"loss {m.loss:.4g} (no chance baseline for {', '.join(m.loss_calls) or 'this loss'})"
        )
    return Presentation(
        headline,
        metrics={"loss": m.loss, "baseline": m.baseline, "ratio": ratio},
        tables=(Table("loss", (row,)),),
        watched=("loss", "ratio"),
    )


def provide(m: Measurement, _config: Config) -> InitLoss:
    return InitLoss(m.loss, m.baseline, m.baseline_kind)


SPEC = ProbeSpec(
    name=NAME,
    raises=(
        Code.NONFINITE_VALUES,
        Code.GATED_AT_INIT,
        Code.LOSS_AT_INIT,
        Code.DOUBLE_SOFTMAX,
        Code.LOSS_BROADCAST,
        Code.OUTPUT_IGNORES_INPUT,
    ),
    sharded=True,
    summary="loss at init vs chance; double softmax, loss broadcasting, input-independent output",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    provides=InitLoss,
    provide=provide,
    # Measured in plain training steps of the same model: ResNet-50 1.9, GPT-2 small 1.8
    # (benchmarks/real_size/run.py, default check, 2-core CPU, 2026-11-28).
    cost=lambda c: 2.0,
    quick=True,
    order=40,
)
