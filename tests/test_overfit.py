"""The overfit probe: passes on learnable batches, fails with a diagnosis on sick ones."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import nndiag
from nndiag.config import Amp
from nndiag.core.context import Definition, build_context
from nndiag.core.training import new_trainer
from nndiag.findings import Severity
from nndiag.probes.overfit import Config, Measurement, Run, diagnose

from conftest import SAMPLES
from models import class_batch, mlp
from probing import context

PASS_LOSS_FRACTION = Config().pass_loss_fraction


def overfit(target, **options):
    report = nndiag.check(target, probes=["overfit"], device="cpu", **options)
    result = report.result("overfit")
    assert result.status.value == "ok", result.error
    return result


def test_healthy_mlp_passes_early_with_a_full_curve() -> None:
    result = overfit(str(SAMPLES / "mlp.py"))
    m = result.metrics
    assert m["passed"] and m["steps_to_pass"] < 300
    assert m["final_accuracy"] == 1.0
    assert m["final_loss"] <= PASS_LOSS_FRACTION * min(m["initial_loss"], math.log(5))
    curve = result.table("curve").rows
    assert [r["step"] for r in curve] == list(range(m["steps_to_pass"] + 1))
    assert curve[0]["loss"] == pytest.approx(m["initial_loss"])


def test_bottleneck_learns_from_its_inputs_without_memorising() -> None:
    """A width-1 bottleneck cannot memorise, but beats the zeroed-input baseline: it learns, so
    the verdict is an info that says how far it got (a loss floor looks the same), not an error
    claiming the model cannot train."""
    result = overfit(str(SAMPLES / "sick_bottleneck.py"))
    (found,) = result.findings
    assert found.code == "overfit-failed" and found.severity is Severity.INFO
    assert result.metrics["inputs_help"] is True
    assert "learns from its inputs" in found.message and "bottleneck" in found.hint


def test_model_that_ignores_its_input_gains_nothing_from_it() -> None:
    result = overfit(str(SAMPLES / "sick_ignores_input.py"))
    assert result.metrics["passed"] is False
    assert result.metrics["inputs_help"] is False
    assert "gains nothing from them" in result.findings[0].message


def test_too_high_lr_is_diagnosed() -> None:
    # Regression: with classification, Adam's huge sign-like steps occasionally do memorise 16
    # labels (a zero cross-entropy is reachable by luck); an MSE target is not.
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(16, 8, generator=g), torch.randn(16, 4, generator=g))
    torch.manual_seed(0)
    result = overfit(mlp(), batch=batch, lr=50.0, steps=30)
    (failed,) = result.findings
    assert failed.code == "overfit-failed"
    assert "learning rate is too high" in failed.hint


def test_steps_and_lr_options() -> None:
    result = overfit(str(SAMPLES / "cnn.py"), steps=3, lr=1e-5)
    assert result.metrics["passed"] is False
    assert len(result.table("curve").rows) == 4  # steps 0..3: the last row measures after 3 updates
    assert result.metrics["lr"] == 1e-5


def test_user_optimizer_keeps_group_ratios() -> None:
    model = mlp()

    def make_optimizer(params):
        params = list(params)
        return torch.optim.SGD(
            [{"params": params[:2], "lr": 0.1}, {"params": params[2:], "lr": 0.01}]
        )

    from nndiag.config import CheckOptions

    definition = Definition(make_batch=lambda n: class_batch(), make_optimizer=make_optimizer)
    ctx = build_context(model, CheckOptions(device="cpu"), target="t", definition=definition)
    groups = ctx.optimizer(ctx.fresh_model(), lr=0.5).param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.5, 0.05])
    assert [g["lr"] for g in ctx.optimizer(ctx.fresh_model()).param_groups] == [0.1, 0.01]


@pytest.mark.parametrize("amp", [Amp.BF16, Amp.FP16])
def test_mixed_precision_runs_on_cpu(amp: Amp) -> None:
    result = overfit(mlp(), batch=class_batch(), amp=amp, steps=20)
    assert math.isfinite(result.metrics["final_loss"])
    assert result.metrics["final_loss"] < result.metrics["initial_loss"]


def test_fp16_scaler_skips_overflowing_steps() -> None:
    batch = class_batch()
    ctx = context(mlp(), batch, amp=Amp.FP16)
    trainer = new_trainer(ctx, 1e-3)
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # scaled grads overflow
    before = [p.clone() for p in trainer.model.parameters()]
    step = trainer.step(batch)
    assert step.applied is False
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_regression_pass_uses_loss_only() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, generator=g)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))
    result = overfit(model, batch=(x, torch.randn(16, 2, generator=g)))
    assert result.metrics["passed"] and math.isnan(result.metrics["final_accuracy"])


# ---- the verdict on synthetic loss curves (diagnose is pure: numbers in, findings out) --------


def _run(losses: list[float], accuracy: float = math.nan, passed: bool = False) -> Run:
    rows = tuple(
        {"step": i, "loss": v, "accuracy": accuracy if i == len(losses) - 1 else math.nan}
        for i, v in enumerate(losses)
    )
    finite = all(math.isfinite(v) for v in losses)
    return Run(rows, len(losses) - 1 if passed else None, None if finite else len(losses) - 1, 0)


def _measured(
    losses: list[float], zeroed: list[float] | None, accuracy: float = math.nan
) -> Measurement:
    zero = _run(zeroed) if zeroed is not None else None
    return Measurement(_run(losses, accuracy), zero, 0.05, 3e-3, "default", 16, True)


def _geometric(start: float, end: float, steps: int = 301) -> list[float]:
    return [start * (end / start) ** (i / (steps - 1)) for i in range(steps)]


def test_a_loss_no_better_than_zeroed_inputs_is_stuck_an_error() -> None:
    [found] = diagnose(_measured(_geometric(2.3, 1.6), _geometric(2.3, 1.62)), Config())
    assert found.severity is Severity.ERROR and "gains nothing from them" in found.message


def test_a_loss_with_a_floor_below_the_zeroed_baseline_is_an_info() -> None:
    """An ELBO: 8.78e3 -> 4.57e3 where zeroed inputs reach 5.99e3 (just inside the 0.9 bound)."""
    [found] = diagnose(_measured(_geometric(8780, 4570), _geometric(8780, 5990)), Config())
    assert found.severity is Severity.INFO and "learns from its inputs" in found.message


def test_divergence_and_a_rising_loss_are_errors() -> None:
    diverged = diagnose(_measured([2.0, 3.0, math.inf], None), Config())
    assert [(f.code, f.severity) for f in diverged] == [
        ("overfit-failed", Severity.ERROR),
        ("nonfinite-values", Severity.ERROR),
    ]
    [rose] = diagnose(_measured(_geometric(1.0, 4.0), _geometric(1.0, 1.0)), Config())
    assert rose.severity is Severity.ERROR and "too high" in rose.hint


def test_the_message_never_contradicts_its_numbers() -> None:
    """A loss that ends below the pass line fails only on accuracy, and says so."""
    [found] = diagnose(
        _measured(_geometric(2.0, 0.01), _geometric(2.0, 1.9), accuracy=0.8), Config()
    )
    assert "reached the pass line but accuracy is 80%" in found.message


def test_a_dense_classification_output_is_scored_over_its_class_axis() -> None:
    """(batch, classes, H, W) logits: accuracy over axis 1, so a memorised batch passes."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 3, 1))
    result = overfit(model, batch=(x, y), loss_fn=nn.functional.cross_entropy)
    assert result.metrics["passed"] and result.metrics["final_accuracy"] >= 0.95


def test_headline_says_which_examples_of_a_larger_batch_are_memorised() -> None:
    import nndiag

    from conftest import SAMPLES

    report = nndiag.check(str(SAMPLES / "mlp.py"), batch_size=32, probes=["overfit"])
    assert "16 examples (the first of the batch of 32)" in report.result("overfit").headline
