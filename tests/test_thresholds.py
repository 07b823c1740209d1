"""Verdicts at their thresholds: each probe's `diagnose` on hand-made measurements just inside and
just outside every bound (a pure function of numbers: no model, no training)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from nndiag.probes import activations, data

EPS = 1e-3  # relative step across a bound


def codes(findings: list[Any]) -> set[str]:
    return {f.code for f in findings}


# ---- data ----------------------------------------------------------------------------------------


def data_row(name: str, rms: float, **extra: Any) -> dict[str, Any]:
    return {"tensor": name, "dtype": "float32", "shape": "16x8", "mean": 0.0, "std": rms,
            "min": -rms, "max": rms, "nonfinite": 0, "rms": rms, **extra}  # fmt: skip


def data_measurement(rms: float, classes: list[int], target_std: float = 1.0) -> data.Measurement:
    targets = {**data_row("targets", target_std), "dtype": "int64", "distinct": len(classes)}
    total = sum(classes)
    hist = tuple(
        {"class": c, "count": n, "fraction": n / total} for c, n in enumerate(classes) if n
    )
    return data.Measurement((data_row("inputs", rms), targets), hist, True, total, total)


@pytest.mark.parametrize("bound", ["input_rms_max", "input_rms_min"])
def test_input_scale_fires_just_outside_its_band(bound: str) -> None:
    config = data.Config()
    limit = getattr(config, bound)
    outside = limit * (1 + EPS) if bound.endswith("max") else limit * (1 - EPS)
    inside = limit * (1 - EPS) if bound.endswith("max") else limit * (1 + EPS)
    assert "input-scale" in codes(data.diagnose(data_measurement(outside, [8, 8]), config))
    assert "input-scale" not in codes(data.diagnose(data_measurement(inside, [8, 8]), config))


def test_majority_class_fires_just_above_its_share() -> None:
    config = data.Config()  # majority_fraction_max 0.9
    above = data.diagnose(data_measurement(1.0, [91, 9]), config)  # 0.91
    at = data.diagnose(data_measurement(1.0, [90, 10]), config)  # 0.90: not above
    assert "degenerate-targets" in codes(above) and "degenerate-targets" not in codes(at)


def test_constant_regression_targets_at_round_off() -> None:
    config = data.Config()
    rtol = config.constant_target_rtol

    def regression(std: float) -> data.Measurement:
        return data.Measurement(
            (data_row("inputs", 1.0), data_row("targets", std)), (), False, 16, 16
        )

    assert "degenerate-targets" in codes(data.diagnose(regression(rtol * (1 - EPS)), config))
    assert "degenerate-targets" not in codes(data.diagnose(regression(rtol * (1 + EPS)), config))


def test_every_target_ignored_is_its_own_root() -> None:
    m = data_measurement(1.0, [8, 8])
    ignored = data.Measurement(m.rows, (), True, 0, 16)
    assert codes(data.diagnose(ignored, data.Config())) == {"ignored-targets"}


# ---- activations ---------------------------------------------------------------------------------


def site(
    dead: float, dead_after: float, saturated: float = 0.0, saturated_after: float = 0.0
) -> dict[str, Any]:
    return {"site": "net.1", "kind": "relu", "dead_fraction": dead, "dead_after_steps": dead_after,
            "saturated_fraction": saturated, "saturated_after_steps": saturated_after}  # fmt: skip


@pytest.mark.parametrize(
    ("dead", "after", "fires"),
    [(1 + EPS, 1 + EPS, True), (1 - EPS, 1 + EPS, False), (1 + EPS, 1 - EPS, False)],
)
def test_dead_units_need_the_bound_at_init_and_after_the_steps(
    dead: float, after: float, fires: bool
) -> None:
    config = activations.Config()
    limit = config.dead_fraction_max
    m = activations.Measurement((site(limit * dead, limit * after),), config.min_examples)
    assert ("dead-units" in codes(activations.diagnose(m, config))) is fires


def test_dead_units_are_not_judged_on_too_few_examples() -> None:
    config = activations.Config()
    row = site(1.0, 1.0)
    assert codes(activations.diagnose(activations.Measurement((row,), config.min_examples), config))
    few = activations.Measurement((row,), config.min_examples - 1)
    assert activations.diagnose(few, config) == []


@pytest.mark.parametrize(("scale", "fires"), [(1 + EPS, True), (1 - EPS, False)])
def test_saturated_units_at_their_bound(scale: float, fires: bool) -> None:
    config = activations.Config()
    limit = min(1.0, config.saturated_fraction_max * scale)
    m = activations.Measurement((site(0.0, 0.0, limit, limit),), config.min_examples)
    assert ("saturated-units" in codes(activations.diagnose(m, config))) is fires
    assert math.isfinite(limit)


# ---- chance baselines against closed forms ----------------------------------------------------


def test_mse_baseline_is_the_loss_of_the_best_constant_prediction() -> None:
    import torch
    import torch.nn.functional as F

    from nndiag.core.losses import LossObserver, chance_baseline

    g = torch.Generator().manual_seed(0)
    y = 3.0 + 2.0 * torch.randn(37, 2, generator=g)
    with LossObserver() as observer:
        F.mse_loss(torch.zeros_like(y), y)
    best_constant = float(F.mse_loss(y.mean().expand_as(y), y))  # argmin_c mean((y - c)^2)
    assert chance_baseline(observer).value == pytest.approx(best_constant, rel=1e-6)


@pytest.mark.parametrize("loss", ["cross_entropy", "nll_loss"])
def test_classification_baseline_is_the_loss_of_uniform_predictions(loss: str) -> None:
    import torch
    import torch.nn.functional as F

    from nndiag.core.losses import LossObserver, chance_baseline

    logits, labels = torch.zeros(8, 7), torch.arange(8) % 7
    inputs = logits if loss == "cross_entropy" else F.log_softmax(logits, dim=1)
    with LossObserver() as observer:
        value = getattr(F, loss)(inputs, labels)
    assert (
        chance_baseline(observer).value == pytest.approx(float(value)) == pytest.approx(math.log(7))
    )
