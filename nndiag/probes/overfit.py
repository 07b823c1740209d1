"""overfit: can a copy of the model memorise one fixed small batch?

"Overfit one batch ... if the model can't memorise a handful of examples, something is broken"
(Karpathy 2019; TheDeepChecker, Ben Braiek & Khomh 2022, uses a batch of 16 and error <= 5%).
Trains a deep copy on the first examples of the fixed batch with the user's optimizer (or Adam),
stops as soon as the pass criteria hold. A loss still falling steadily when the steps run out gets
more steps, up to a cap, when its rate would reach the target within them; a model that still
has not passed then is slow (a warning with its rate), and only a loss that stopped improving
far from the target is the error. On failure a
second copy trains on zeroed inputs to tell whether the inputs help at all.
See docs/probes/overfit.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from nndiag.config import SUGGESTED
from nndiag.findings import Code, Finding, Severity, finding
from nndiag.probes.base import Presentation, ProbeSpec, setting
from nndiag.probes.provisions import InitLoss, SuggestedLR
from nndiag.report import Plot, Row, Table

if TYPE_CHECKING:
    from nndiag.core.context import Context
    from nndiag.core.tensors import Arguments
    from nndiag.core.training import Substitute

NAME = "overfit"


@dataclass(frozen=True)
class Config:
    steps: int = setting(
        300,
        "training steps before the pass criteria are judged",
        source="every healthy sample and tiny GPT-2/BERT pass on CPU within it (GPT-2: ~130)",
        low=1,
    )
    lr: float | Literal["suggested"] | None = setting(
        None,
        "learning rate; 'suggested' trains at the lr-range probe's pick; default: default_lr "
        "with Adam, or your make_optimizer's own",
    )
    default_lr: float = setting(
        3e-3,
        "Adam's step size when the model file has no make_optimizer",
        source="3x Adam's default: memorising wants speed (1e-3 needs ~340 steps on tiny GPT-2)",
        low=0.0,
    )
    examples: int = setting(
        16,
        "examples memorised: the first of the fixed batch",
        source="TheDeepChecker's batch of 16",
        low=1,
    )
    pass_loss_fraction: float = setting(
        0.05,
        "pass when the loss falls below this fraction of min(initial loss, chance)",
        source="a 20x reduction, against chance so that an inflated starting loss cannot lower the bar",
        low=0.0,
        high=1.0,
    )
    pass_accuracy: float = setting(
        0.95,
        "classification also needs this accuracy on the memorised examples",
        source="TheDeepChecker: error <= 5%",
        low=0.0,
        high=1.0,
    )
    accuracy_every: int = setting(
        10,
        "accuracy is measured every this many steps",
        source="an argmax per step costs ~15%",
        low=1,
    )
    plateau_improvement: float = setting(
        0.1,
        "a loss that improved by less than this over the last fifth of the run has stopped improving",
        source="at the default 300 steps, 10% per 60 steps would take ~1700 more steps to fall "
        "20x, far past max_extension",
        low=0.0,
        high=1.0,
    )
    max_extension: float = setting(
        3.0,
        "a loss still falling when the steps run out trains on, up to this multiple of steps",
        source="calibrated on a U-Net denoiser and an autoencoder (pass at 1.4x-2.2x the steps)",
        low=1.0,
    )
    reach_factor: float = setting(
        3.0,
        "a loss still falling at the end is slow (a warning), not failing, only when at its "
        "recent geometric rate it would pass within this multiple of steps more; slower is an "
        "error (a loss creeping towards a floor it cannot cross, as behind a width-1 bottleneck)",
        source="calibrated: a U-Net denoiser and an autoencoder pass within 2.2x; a width-1 "
        "bottleneck projects to 4x, and the geometric projection is optimistic for a loss that "
        "decelerates",
        low=1.0,
    )
    zeroed_baseline: bool = setting(
        True,
        "when the run does not pass, train a second copy on zeroed inputs to tell a model that "
        "learns slowly from one that gains nothing from its inputs; off (as --budget sets it to "
        "save steps), a run that neither passed nor diverged is info: memorisation not confirmed",
    )
    inputs_help_fraction: float = setting(
        0.9,
        "the inputs help when the real run ends below this fraction of the zeroed-input run's loss",
        source="a VAE with an ELBO floor ends at 0.76 of its zeroed-input loss (4.57e3 vs "
        "5.99e3); a model that ignores its input ends at about 1.0 of it: 0.9 leaves 10% for "
        "run-to-run noise",
        low=0.0,
        high=1.0,
    )

    def __post_init__(self) -> None:
        from nndiag.errors import OptionError

        if isinstance(self.lr, float) and not (self.lr > 0 and math.isfinite(self.lr)):
            raise OptionError(
                f"overfit: lr {self.lr!r} must be a positive finite number or '{SUGGESTED}'"
            )


@dataclass(frozen=True)
class Run:
    rows: tuple[Row, ...]  # step, loss, accuracy
    passed_at: int | None
    nonfinite_at: int | None
    extended: int  # steps added because the loss was still falling

    @property
    def losses(self) -> list[float]:
        return [float(r["loss"]) for r in self.rows]

    @property
    def final_loss(self) -> float:
        return float(self.rows[-1]["loss"])

    @property
    def final_accuracy(self) -> float:
        return float(self.rows[-1]["accuracy"])


@dataclass(frozen=True)
class Measurement:
    run: Run
    zeroed: Run | None  # the zeroed-input baseline, trained only when the real run failed
    threshold: float
    lr: float | None
    lr_source: str  # "default", "--lr", "suggested", "optimizer", "suggested (none: default)"
    examples: int
    classify: bool
    calmer: Run | None = None  # at a tenth of nndiag's default LR, when the loss rose there
    batch: int = 0  # the fixed batch's examples, of which the first `examples` are memorised


def measure(ctx: Context, config: Config) -> Measurement:
    import torch

    from nndiag.config import Task
    from nndiag.core.tensors import first_examples, map_tensors

    lr, source = _learning_rate(ctx, config)
    per_rank = -(-config.examples // ctx.reduce.world)  # under torchrun
    batch, count = first_examples(ctx.batch, ctx.rows, per_rank)
    known = ctx.provided.get(InitLoss)
    if known is None:
        from nndiag.core.losses import chance_baseline, observed_step

        initial, observer = observed_step(ctx, ctx.fresh_model(), batch)
        baseline = chance_baseline(observer, ctx.reduce).value
    else:
        initial, baseline = known.loss, known.baseline
    reference = min(initial, baseline) if math.isfinite(baseline) else initial
    threshold = config.pass_loss_fraction * reference
    classify = ctx.task is Task.CLASSIFICATION
    run = _train(ctx, batch, None, lr, threshold, config, classify, "overfit one batch")
    calmer = None
    if source == "default" and lr is not None and _rose_or_diverged(run):
        # Our default rate, not yours: confirm the failure at a calmer one before blaming the model.
        calmer = _train(ctx, batch, None, lr / 10, threshold, config, classify, "overfit, lr / 10")
    zeroed = None
    if run.passed_at is None and config.zeroed_baseline:

        def zero(call: Arguments) -> Arguments:  # the root module's inputs, zeroed
            return map_tensors(torch.zeros_like, call)

        plain = dataclasses.replace(config, max_extension=1.0, steps=len(run.rows) - 1)
        zeroed = _train(ctx, batch, zero, lr, -math.inf, plain, classify, "overfit zeroed inputs")
    return Measurement(
        run,
        zeroed,
        threshold,
        lr,
        source,
        count * ctx.reduce.world,
        classify,
        calmer,
        ctx.rows * ctx.reduce.world,
    )


def _rose_or_diverged(run: Run) -> bool:
    return run.nonfinite_at is not None or (
        run.passed_at is None and run.losses[-1] > run.losses[0]
    )


def _learning_rate(ctx: Context, config: Config) -> tuple[float | None, str]:
    if config.lr == SUGGESTED:
        suggested = ctx.provided.get(SuggestedLR)
        if suggested is not None and suggested.lr is not None:
            return suggested.lr, "suggested"
        fallback = None if ctx.optimizer_for else config.default_lr
        return fallback, "suggested (none: default)"
    if isinstance(config.lr, float):
        return config.lr, "--lr"
    return (None, "optimizer") if ctx.optimizer_for else (config.default_lr, "default")


def memorised(loss: float, accuracy: float, threshold: float, config: Config) -> bool:
    """At or below the pass line and, for class scores, accurate enough. Accuracy is NaN where
    the outputs are not class scores (a custom loss on integer targets): the loss alone decides."""
    return loss <= threshold and (math.isnan(accuracy) or accuracy >= config.pass_accuracy)


def _still_falling(losses: list[float], config: Config) -> bool:
    recent = losses[-max(2, len(losses) // 5) :]
    return recent[-1] < (1 - config.plateau_improvement) * recent[0]


def _within_reach(losses: list[float], threshold: float, steps_left: int) -> bool:
    """At the rate of the last fifth of the run (geometric), would the loss reach `threshold`
    within `steps_left` steps? Extending a run that would not is a waste of time."""
    recent = losses[-max(2, len(losses) // 5) :]
    if recent[0] <= 0 or recent[-1] <= 0 or threshold <= 0:
        return False
    per_step = math.log(recent[-1] / recent[0]) / max(1, len(recent) - 1)
    if per_step >= 0:
        return False
    return math.log(threshold / recent[-1]) / per_step <= steps_left


def _extends(losses: list[float], steps_left: int, threshold: float, config: Config) -> bool:
    """Train on past the steps: steps are left under the cap, and the loss is still falling
    fast enough to reach the pass line within them."""
    return (
        steps_left > 0
        and _still_falling(losses, config)
        and _within_reach(losses, threshold, steps_left)
    )


def _train(
    ctx: Context,
    batch: Any,
    substitute: Substitute | None,
    lr: float | None,
    threshold: float,
    config: Config,
    classify: bool,
    description: str,
) -> Run:
    from nndiag.core.losses import LossObserver, accuracy
    from nndiag.core.reduce import mean
    from nndiag.core.steps import float_loss
    from nndiag.core.training import new_trainer

    trainer = new_trainer(ctx, lr)
    budget, cap = config.steps, int(config.steps * config.max_extension)
    rows = ctx.recording("curve") if description == "overfit one batch" else []
    passed_at = nonfinite_at = None
    step = 0
    with ctx.progress.track(description, cap) as advance:
        while True:
            # The loss call's input and target give the accuracy, whatever the step looks like.
            with LossObserver().watching(trainer.model) as observer:
                if step == budget:  # judge the run, measuring after the last update
                    loss = mean(ctx.reduce, float_loss(trainer.evaluate(batch, substitute)))
                else:
                    loss = trainer.step(batch, substitute).loss
            measured = classify and (
                loss <= threshold or step % config.accuracy_every == 0 or step == budget
            )
            acc = accuracy(observer.loss_call) if measured else math.nan
            acc = mean(ctx.reduce, acc)  # each rank holds an equal slice of the examples
            rows.append({"step": step, "loss": loss, "accuracy": acc})
            if not math.isfinite(loss):
                nonfinite_at = step
                break
            if memorised(loss, acc, threshold, config):
                passed_at = step
                break
            if step == budget:
                if not _extends([r["loss"] for r in rows], cap - budget, threshold, config):
                    break
                budget = min(cap, budget + config.steps)  # still falling: more steps
                rows.pop()  # the next training step measures the same weights again
                continue
            step += 1
            advance(1)
    return Run(tuple(rows), passed_at, nonfinite_at, budget - config.steps)


# ---- diagnosing ------------------------------------------------------------------------------------


class Verdict(StrEnum):
    """How the run ended."""

    PASSED = "passed"
    DIVERGED = "diverged"
    ROSE = "rose"
    STALLED = "stalled"  # accuracy no better than in the first half, the loss flat
    PLATEAU = "plateau"
    SLOW = "slow"  # still falling, would pass within reach_factor x steps
    CRAWLING = "crawling"  # still falling, too slowly to ever pass


def verdict(m: Measurement, config: Config) -> Verdict:
    run = m.run
    losses = run.losses
    if run.passed_at is not None:
        return Verdict.PASSED
    if run.nonfinite_at is not None:
        return Verdict.DIVERGED
    if losses[-1] > losses[0]:
        return Verdict.ROSE
    accuracies = [r["accuracy"] for r in run.rows]
    early = [a for a in accuracies[: len(accuracies) // 2] if not math.isnan(a)]
    if (
        not math.isnan(accuracies[-1])
        and early
        and accuracies[-1] <= max(early)
        and not _still_falling(losses, config)
    ):
        return Verdict.STALLED
    if not _still_falling(losses, config):
        return Verdict.PLATEAU
    reach = config.steps * config.reach_factor
    return Verdict.SLOW if _within_reach(losses, m.threshold, round(reach)) else Verdict.CRAWLING


CAPACITY_CAUSES = (
    "look for a capacity bottleneck (a width-1 layer), dead units, a loss that cannot reach zero "
    "(double softmax), or frozen/detached parameters."
)


STUCK = (Verdict.ROSE, Verdict.DIVERGED)


def diagnose(m: Measurement, config: Config) -> list[Finding]:
    """An error only when training is stuck: the loss diverges or rises, or ends no lower than a
    copy trained on zeroed inputs reaches (the inputs teach it nothing). A loss that falls below
    that baseline learns from its inputs: one batch is memorisable only as far as the loss allows
    (ELBO terms, label smoothing, examples the model cannot tell apart, a slow dense task), so
    not reaching the pass line is then an info that says how far it got."""
    kind = verdict(m, config)
    if kind is Verdict.PASSED:
        return []
    run = m.run
    findings = [_failure(m, kind, config)]
    if run.nonfinite_at is not None:
        findings.append(
            finding(
                Code.NONFINITE_VALUES,
                NAME,
                f"the training loss became NaN/Inf at step {run.nonfinite_at}",
            )
        )
    return findings


def _message(m: Measurement) -> str:
    run, losses = m.run, m.run.losses
    steps = len(run.rows) - 1
    message = (
        f"could not memorise {m.examples} examples in {steps} steps: loss {losses[0]:.3g} -> "
        f"{run.final_loss:.3g} (pass <= {m.threshold:.3g})"
    )
    if not math.isnan(run.final_accuracy):
        below = run.final_loss <= m.threshold
        message += (
            f"; the loss reached the pass line but accuracy is {run.final_accuracy:.0%}"
            if below
            else f", accuracy {run.final_accuracy:.0%}"
        )
    return message


def _failure(m: Measurement, kind: Verdict, config: Config) -> Finding:
    message = _message(m)
    learns = _inputs_help(m, config)
    calm = m.calmer
    if kind in STUCK and calm is not None and m.lr is not None:
        recovered = calm.passed_at is not None or calm.final_loss < 0.9 * calm.losses[0]
        if recovered:
            outcome = (
                "memorises it"
                if calm.passed_at is not None
                else (f"learns ({calm.losses[0]:.3g} -> {calm.final_loss:.3g})")
            )
            return finding(
                Code.OVERFIT_FAILED,
                NAME,
                f"{message}; the loss {kind} at lr {m.lr:.2g} (nndiag's default for Adam), and "
                f"at {m.lr / 10:.2g} the model {outcome}: the default rate is too high for this "
                "model, not a fault of the model",
                evidence={"verdict": kind, "calmer_lr": m.lr / 10},
                severity=Severity.INFO,
                hint="Train at a lower rate (the lr-range probe suggests one).",
            )
        message += f"; at lr {m.lr / 10:.2g} it does not learn either"
    if kind in STUCK or learns is False:
        if m.zeroed is not None:
            message += f"; zeroed inputs reach {m.zeroed.final_loss:.3g}: the model gains nothing from them"
        return finding(
            Code.OVERFIT_FAILED,
            NAME,
            message,
            hint=_hint(kind, m, config),
            evidence={"verdict": kind},
        )
    evidence = {"verdict": kind, "steps": len(m.run.rows) - 1}
    if learns is None:  # no zeroed-input baseline (--budget turned it off)
        return finding(
            Code.OVERFIT_FAILED,
            NAME,
            message + f" ({kind}); with no zeroed-input baseline to compare (--budget skips it), "
            "memorisation is unconfirmed",
            evidence=evidence,
            severity=Severity.INFO,
            hint="Raise --budget to train the full run.",
        )
    assert m.zeroed is not None
    share = m.run.final_loss / m.zeroed.final_loss if m.zeroed.final_loss > 0 else math.nan
    trend = (
        f"still falling ({_rate_per_100(m.run.losses):.0%} per 100 steps)"
        if kind in (Verdict.SLOW, Verdict.CRAWLING)
        else "levelling off"
    )
    return finding(
        Code.OVERFIT_FAILED,
        NAME,
        f"{message}; it learns from its inputs (zeroed inputs reach {m.zeroed.final_loss:.3g}, "
        f"{share:.0%} of that here), the loss {trend}",
        evidence={**evidence, "zeroed_final_loss": m.zeroed.final_loss},
        severity=Severity.INFO,
        hint="Nothing to do when the loss has a floor (ELBO terms, label smoothing, examples "
        "the model cannot tell apart) or the task is slow; otherwise look for a capacity "
        "bottleneck (a width-1 layer) or raise --steps.",
    )


def _inputs_help(m: Measurement, config: Config) -> bool | None:
    """Does the real run end clearly below the zeroed-input run? None without that baseline."""
    if m.zeroed is None:
        return None
    return m.run.final_loss < config.inputs_help_fraction * m.zeroed.final_loss


def _rate_per_100(losses: list[float]) -> float:
    """Relative fall of the loss per 100 steps over the last fifth of the run."""
    recent = losses[-max(2, len(losses) // 5) :]
    if recent[0] <= 0 or recent[-1] <= 0:
        return 0.0
    per_step = (recent[-1] / recent[0]) ** (1 / max(1, len(recent) - 1))
    return 1 - per_step**100


def _hint(kind: Verdict, m: Measurement, config: Config) -> str:
    if kind is Verdict.DIVERGED:
        return "The loss diverged to NaN/Inf: lower the learning rate, check for log(0) or division by zero."
    if kind is Verdict.ROSE:
        lower = f" (try --lr {m.lr / 10:g})" if m.lr else ""
        return f"The loss rose: the learning rate is too high{lower}."
    if kind is Verdict.CRAWLING:
        rate = _rate_per_100(m.run.losses)
        return (
            f"The loss still falls, but at {rate:.1%} per 100 steps it would not pass within "
            f"{config.reach_factor:g}x the steps: {CAPACITY_CAUSES}"
        )
    if kind is Verdict.STALLED:
        return f"Accuracy stalled at {m.run.final_accuracy:.0%} over the second half of the run: {CAPACITY_CAUSES}"
    return f"The loss plateaued: {CAPACITY_CAUSES}"


def present(m: Measurement, config: Config) -> Presentation:
    run = m.run
    kind = verdict(m, config)
    metrics: dict[str, Any] = {
        "passed": run.passed_at is not None,
        "verdict": kind,
        "steps_to_pass": run.passed_at,
        "initial_loss": run.rows[0]["loss"],
        "final_loss": run.final_loss,
        "final_accuracy": run.final_accuracy,
        "pass_loss": m.threshold,
        "lr": m.lr if m.lr is not None else "optimizer default",
        "lr_source": m.lr_source,
        "examples": m.examples,
        "extended_steps": run.extended,
    }
    if m.zeroed is not None:
        metrics["zeroed_input_final_loss"] = m.zeroed.final_loss
        metrics["inputs_help"] = _inputs_help(m, config)
    notes = [
        f"pass: loss <= {m.threshold:.3g} ({config.pass_loss_fraction:g} x min(initial, chance))"
        + (f" and accuracy >= {config.pass_accuracy:.0%}" if m.classify else "")
    ]
    if m.lr_source.startswith("suggested"):
        notes.append(
            f"--lr suggested: trained at the LR range test's suggestion {m.lr:.3g}"
            if m.lr_source == "suggested"
            else "--lr suggested: the LR range test made no suggestion; trained at the default LR"
        )
    if run.extended:
        notes.append(
            f"the loss was still falling at {config.steps} steps: trained {run.extended} more"
        )
    lr_text = f"lr {m.lr:.2g}" if m.lr is not None else "the optimizer's lr"
    of = f" (the first of the batch of {m.batch})" if m.batch > m.examples else ""
    if kind is Verdict.PASSED:
        headline = (
            f"memorised {m.examples} examples{of} in {run.passed_at} steps at {lr_text} "
            f"(loss {run.rows[0]['loss']:.3g} -> {run.final_loss:.3g})"
        )
    else:
        headline = (
            f"{kind} after {len(run.rows) - 1} steps at {lr_text}: loss "
            f"{run.rows[0]['loss']:.3g} -> {run.final_loss:.3g}, pass <= {m.threshold:.3g}"
        )
    table = Table(
        "curve",
        run.rows,
        plot=Plot("step", "loss", log_y=True, x_label="Step", y_label="Loss (one batch)"),
        key="step",
    )
    return Presentation(headline, metrics, (table,), tuple(notes))


def requires(config: Config) -> tuple[type, ...]:
    return (SuggestedLR,) if config.lr == SUGGESTED else ()


def shrink(config: Config, factor: float) -> tuple[Config, str]:
    steps = max(MIN_STEPS, round(config.steps * factor))
    smaller = dataclasses.replace(config, steps=steps, max_extension=1.0, zeroed_baseline=False)
    return smaller, f"{steps} steps and no extension: a loss still falling is not called a failure"


MIN_STEPS = 15


SPEC = ProbeSpec(
    name=NAME,
    raises=(Code.NONFINITE_VALUES, Code.OVERFIT_FAILED),
    sharded=True,
    summary="trains a copy on one fixed batch: can it memorise it? steps to pass, loss curve",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    trains=True,
    needs=(InitLoss, SuggestedLR),
    requires=requires,
    cost=lambda c: c.steps * 1.3,
    shrink=shrink,
    aliases={"steps": "steps", "lr": "lr"},
    order=110,
)
