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
from nndiag.probes.overfit import Config

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


def test_bottleneck_fails_and_inputs_help() -> None:
    result = overfit(str(SAMPLES / "sick_bottleneck.py"))
    (found,) = result.findings
    assert found.code == "overfit-failed"
    assert result.metrics["inputs_help"] is True
    assert any(word in found.hint for word in ("stalled", "plateaued", "would not pass"))


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
    step = trainer.step(*batch)
    assert step.applied is False
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_regression_pass_uses_loss_only() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, generator=g)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))
    result = overfit(model, batch=(x, torch.randn(16, 2, generator=g)))
    assert result.metrics["passed"] and math.isnan(result.metrics["final_accuracy"])
