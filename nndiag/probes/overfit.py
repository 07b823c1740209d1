"""overfit: can a copy of the model memorise one fixed small batch?

"Overfit one batch ... if the model can't memorise a handful of examples, something is broken"
(Karpathy 2019; TheDeepChecker, Ben Braiek & Khomh 2022, uses a batch of 16 and error <= 5%).
Trains a deep copy on the shared fixed batch with the user's optimizer (or Adam), stops as soon as
the pass criteria hold, and on failure trains another copy on zeroed inputs for the same steps to
tell whether the inputs help at all. See docs/probes/overfit.md.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from nndiag.config import Task
from nndiag.context import Context, as_logits, call_model, map_tensors
from nndiag.findings import Code, Finding, finding
from nndiag.losses import accuracy, loss_at_init
from nndiag.report import Plot, ProbeResult, Row, Status, Table
from nndiag.training import new_trainer, skipped_when_frozen

NAME = "overfit"

# Pass: loss below 5% of min(initial loss, chance baseline): a 20x reduction, measured against
# chance so that a bad init's inflated starting loss cannot make the bar easy.
PASS_LOSS_FRACTION = 0.05
# Pass (classification): at least 95% of the batch's targets right (TheDeepChecker's error <= 5%;
# with 16 examples that means all of them).
PASS_ACCURACY = 0.95
# Enough for every healthy sample model and tiny GPT-2/BERT on CPU at OVERFIT_LR (the slowest,
# tiny GPT-2 with 16 sequences of 16 tokens, passes in ~130 steps).
DEFAULT_STEPS = 300
# Adam step size when the model file has no make_optimizer: 3x Adam's default, because memorising
# a batch wants speed rather than generalisation (1e-3 needs ~340 steps for tiny GPT-2).
OVERFIT_LR = 3e-3
# Accuracy is measured every 10 steps (and whenever the loss passes): an argmax per step costs
# ~15% of a tiny model's step (benchmarks/overfit.py).
ACCURACY_EVERY = 10
# Diagnosis of a failure: a loss that improved by less than 10% over the last fifth of the run has
# plateaued; accuracy no higher at the end than at mid-run has stalled.
PLATEAU_IMPROVEMENT = 0.1
# Inputs help when the real run ends below 90% of the zeroed-input run's final loss.
INPUTS_HELP_FRACTION = 0.9


@dataclass(frozen=True)
class Run:
    rows: tuple[Row, ...]
    passed_at: int | None
    final_loss: float
    final_accuracy: float
    nonfinite_at: int | None
    seconds_per_step: float


def _train(
    ctx: Context, inputs: Any, steps: int, lr: float | None, threshold: float, description: str
) -> Run:
    trainer = new_trainer(ctx, lr)
    classify = ctx.task is Task.CLASSIFICATION
    rows: list[Row] = []
    passed_at = nonfinite_at = None
    started = time.perf_counter()
    with ctx.progress.track(description, steps) as advance:
        for step in range(steps + 1):
            # The last iteration only measures: the loss after `steps` updates.
            if step == steps:
                with torch.no_grad(), trainer.autocast():
                    outputs = call_model(trainer.model, inputs)
                    logits, loss = as_logits(outputs), float(ctx.loss(outputs, ctx.targets))
            else:
                result = trainer.step(inputs, ctx.targets)
                loss, logits = result.loss, result.logits
            measure = classify and (
                loss <= threshold or step % ACCURACY_EVERY == 0 or step == steps
            )
            acc = accuracy(logits, ctx.targets) if measure else math.nan
            rows.append({"step": step, "loss": loss, "accuracy": acc})
            if not math.isfinite(loss):
                nonfinite_at = step
                break
            if loss <= threshold and (not classify or acc >= PASS_ACCURACY):
                passed_at = step
                break
            if step < steps:
                advance(1)
    elapsed = time.perf_counter() - started
    return Run(
        tuple(rows),
        passed_at,
        rows[-1]["loss"],
        rows[-1]["accuracy"],
        nonfinite_at,
        elapsed / max(1, len(rows)),
    )


def _zeroed(inputs: Any) -> Any:
    return map_tensors(torch.zeros_like, inputs)


def probe(ctx: Context) -> ProbeResult:
    skipped = skipped_when_frozen(ctx, NAME)
    if skipped:
        return skipped
    steps = ctx.options.steps or DEFAULT_STEPS
    lr = ctx.options.lr or (None if ctx.make_optimizer else OVERFIT_LR)
    initial, baseline = loss_at_init(ctx)
    reference = min(initial, baseline.value) if math.isfinite(baseline.value) else initial
    threshold = PASS_LOSS_FRACTION * reference

    run = _train(ctx, ctx.inputs, steps, lr, threshold, "overfit one batch")
    initial_loss = run.rows[0]["loss"]
    metrics: dict[str, Any] = {
        "passed": run.passed_at is not None,
        "steps_to_pass": run.passed_at,
        "initial_loss": initial_loss,
        "final_loss": run.final_loss,
        "final_accuracy": run.final_accuracy,
        "pass_loss": threshold,
        "lr": lr if lr is not None else "optimizer default",
        "ms_per_step": run.seconds_per_step * 1e3,
    }
    findings: list[Finding] = []
    notes = [
        f"pass: loss <= {threshold:.3g} ({PASS_LOSS_FRACTION:g} x min(initial, chance))"
        + (f" and accuracy >= {PASS_ACCURACY:.0%}" if ctx.task is Task.CLASSIFICATION else "")
    ]
    if ctx.options.lr_suggested:
        notes.append(
            f"--lr suggested: trained at the LR range test's suggestion {lr:.3g}"
            if ctx.options.lr
            else "--lr suggested: the LR range test made no suggestion; trained at the default LR"
        )
    if run.passed_at is None:
        zero = _train(ctx, _zeroed(ctx.inputs), steps, lr, -math.inf, "overfit zeroed inputs")
        helps = run.final_loss < INPUTS_HELP_FRACTION * zero.final_loss
        metrics.update(zeroed_input_final_loss=zero.final_loss, inputs_help=helps)
        cause = _diagnose(run, lr)
        inputs_note = (
            f"the inputs help (zeroed inputs reach {zero.final_loss:.3g})"
            if helps
            else f"zeroed inputs reach {zero.final_loss:.3g}: the model gains nothing from them"
        )
        findings.append(
            finding(
                Code.OVERFIT_FAILED,
                NAME,
                f"could not memorise one batch of {_batch_size(ctx)} in {len(run.rows) - 1} steps: "
                f"loss {initial_loss:.3g} -> {run.final_loss:.3g} (pass <= {threshold:.3g})"
                + (
                    f", accuracy {run.final_accuracy:.0%}"
                    if not math.isnan(run.final_accuracy)
                    else ""
                )
                + f"; {inputs_note}",
                evidence=metrics,
                hint=cause,
            )
        )
        if run.nonfinite_at is not None:
            findings.append(
                finding(
                    Code.NONFINITE_VALUES,
                    NAME,
                    f"the training loss became NaN/Inf at step {run.nonfinite_at}",
                )
            )
    return ProbeResult(
        NAME,
        Status.OK,
        metrics=metrics,
        tables=(Table("curve", run.rows, plot=Plot("step", "loss", log_y=True)),),
        findings=tuple(findings),
        notes=tuple(notes),
    )


def _batch_size(ctx: Context) -> int:
    return int(ctx.targets.shape[0]) if ctx.targets.dim() else 1


CAPACITY_CAUSES = (
    "look for a capacity bottleneck (a width-1 layer), dead units, a loss that cannot reach zero "
    "(double softmax), or frozen/detached parameters."
)


def _diagnose(run: Run, lr: float | None) -> str:
    """Name the likeliest cause from the shape of the curve."""
    losses = [r["loss"] for r in run.rows]
    if run.nonfinite_at is not None:
        return "The loss diverged to NaN/Inf: lower --lr, check for log(0) or division by zero."
    if losses[-1] > losses[0]:
        lower = f" (try --lr {lr / 10:g})" if lr else ""
        return f"The loss rose: the learning rate is too high{lower}."
    half = len(run.rows) // 2
    accuracies = [r["accuracy"] for r in run.rows]
    early = [a for a in accuracies[:half] if not math.isnan(a)]
    if not math.isnan(accuracies[-1]) and early and accuracies[-1] <= max(early):
        return (
            f"Accuracy stalled at {accuracies[-1]:.0%} over the second half of the run: "
            f"{CAPACITY_CAUSES}"
        )
    recent = losses[-max(2, len(losses) // 5) :]
    if recent[-1] > (1 - PLATEAU_IMPROVEMENT) * recent[0]:
        return f"The loss plateaued: {CAPACITY_CAUSES}"
    return "The loss is still falling: raise --steps or --lr."
