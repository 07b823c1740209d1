"""The LR range test: suggestion rules on synthetic curves, and the probe on real models."""

from __future__ import annotations

import itertools
import math
import random
from typing import ClassVar

import pytest
import torch
from torch import nn

import nndiag
from nndiag.config import RangeMode
from nndiag.probes.lr_range import (
    MIN_DEPTH,
    TREND_WINDOW,
    minimum_over_ten,
    running_median,
    schedule,
    smooth,
    steepest,
    suggest,
    valley,
)

from conftest import SAMPLES
from models import class_batch, mlp

LRS = [1e-7 * (1e8) ** (i / 99) for i in range(100)]


def valley_curve(centre: float = 1e-3, depth: float = 2.0, blowup: float = 1.0) -> list[float]:
    """Flat at 3, a logistic drop of `depth` centred at `centre`, then a rise past `blowup`."""
    out = []
    for lr in LRS:
        x = math.log10(lr)
        drop = depth / (1 + math.exp(-(x - math.log10(centre)) * 3))
        rise = max(0.0, x - math.log10(blowup)) ** 2 * 20
        out.append(3.0 - drop + rise)
    return out


def test_steepest_is_the_steepest_point_in_log_lr() -> None:
    pick = steepest(LRS, valley_curve(centre=1e-4))
    assert pick is not None and abs(math.log10(pick) - (-4)) < 0.2


def test_minimum_over_ten_and_valley_sit_before_the_blowup() -> None:
    curve = valley_curve(centre=1e-4, blowup=1e-1)
    low = minimum_over_ten(LRS, curve)
    assert low is not None and 1e-3 < low < 1e-2  # minimum is just before 0.1
    pick = valley(LRS, curve)
    assert pick is not None and 1e-6 < pick < 1e-1


def test_nan_tail_is_dropped_and_the_suggestion_stays_in_the_descent() -> None:
    curve = valley_curve(centre=1e-4, blowup=1e-2)
    curve[80:] = [math.nan] * 20
    result = suggest(LRS, curve)
    assert result.recommended is not None
    lowest = min(range(80), key=curve.__getitem__)
    assert LRS[0] <= result.recommended <= LRS[lowest]
    assert result.label in ("medium", "high")


def test_noisy_plateau_has_no_suggestion() -> None:
    rng = random.Random(0)
    flat = [2.0 + rng.gauss(0, 0.02) for _ in LRS]
    result = suggest(LRS, running_median(flat, TREND_WINDOW))
    assert result.recommended is None and result.depth < MIN_DEPTH and result.label == "none"


def test_too_few_points_give_no_suggestion() -> None:
    assert suggest(LRS[:5], valley_curve()[:5]).recommended is None


def test_running_median_removes_a_spike_without_lag() -> None:
    values = [float(i) for i in range(20)]
    values[10] = 1000.0
    trend = running_median(values, TREND_WINDOW)
    assert trend[10] == pytest.approx(10.0, abs=1.0)
    assert trend[5] == 5.0  # a straight line is unchanged: no lag


def test_ema_lags_and_is_bias_corrected() -> None:
    assert smooth([5.0, 5.0, 5.0]) == pytest.approx([5.0, 5.0, 5.0])  # no pull toward 0
    step = smooth([1.0] * 10 + [0.0] * 10)
    assert step[-1] > 0.3  # 10 steps after the drop the EMA has not caught up


def test_schedules_hit_both_ends() -> None:
    for mode in RangeMode:
        assert schedule(0, 50, 1e-6, 1.0, mode) == pytest.approx(1e-6)
        assert schedule(49, 50, 1e-6, 1.0, mode) == pytest.approx(1.0)
    assert schedule(1, 3, 1e-6, 1.0, RangeMode.EXP) == pytest.approx(1e-3)
    assert schedule(1, 3, 0.0, 1.0, RangeMode.LINEAR) == pytest.approx(0.5)


def lr_range(target, **options):
    report = nndiag.check(target, probes=["lr-range"], device="cpu", **options)
    result = report.result("lr-range")
    assert result.status.value == "ok", result.error
    return result


def test_healthy_mlp_gets_a_confident_suggestion_in_the_descent() -> None:
    result = lr_range(str(SAMPLES / "mlp.py"))
    m = result.metrics
    assert m["suggested_lr"] is not None and m["confidence"] in ("medium", "high")
    rows = result.table("curve").rows
    lowest = min(rows, key=lambda r: r["trend"])
    assert rows[0]["lr"] <= m["suggested_lr"] <= lowest["lr"]
    assert rows[0]["trend"] > lowest["trend"]
    assert not result.findings


def test_random_labels_on_fresh_batches_are_called_unlearnable() -> None:
    def make_batch(n):
        return torch.randn(n, 8), torch.randint(0, 4, (n,))

    result = lr_range(mlp(), make_batch=make_batch)
    assert any("no learnable signal" in note for note in result.notes)


def test_flat_model_is_unstable() -> None:
    model = mlp()
    for p in model.parameters():
        p.requires_grad_(False)
    model[-1].bias.requires_grad_(True)  # only a bias learns: no loss decrease worth the name

    def make_batch(n):
        return torch.randn(n, 8), torch.randint(0, 4, (n,))

    result = lr_range(model, make_batch=make_batch)
    assert [f.code.value for f in result.findings] == ["lr-range-unstable"]
    assert result.metrics["suggested_lr"] is None


class RecordingSGD(torch.optim.SGD):
    seen: ClassVar[list[list[float]]] = []

    def step(self, closure=None):  # type: ignore[override]
        RecordingSGD.seen.append([g["lr"] for g in self.param_groups])
        return super().step(closure)


def test_parameter_groups_keep_their_ratio_and_linear_mode() -> None:
    RecordingSGD.seen = []

    def make_optimizer(params):
        params = list(params)
        return RecordingSGD([{"params": params[:2]}, {"params": params[2:], "lr": 0.01}], lr=0.1)

    lr_range(
        mlp(),
        batch=class_batch(),
        make_optimizer=make_optimizer,
        range_mode=RangeMode.LINEAR,
        lr_start=1e-4,
        lr_end=1e-2,
        range_steps=20,
    )
    assert len(RecordingSGD.seen) >= 10
    for first, second in RecordingSGD.seen:
        assert second == pytest.approx(first / 10)
    steps = [s[0] for s in RecordingSGD.seen[:5]]
    gaps = [b - a for a, b in itertools.pairwise(steps)]
    assert max(gaps) == pytest.approx(min(gaps))  # linear ramp


def test_repeats_report_the_spread() -> None:
    result = lr_range(str(SAMPLES / "mlp.py"), repeats=2)
    assert {r["run"] for r in result.table("curve").rows} == {0, 1}
    assert result.metrics["repeats"] == 2
    assert 0 <= result.metrics["repeat_spread_decades"] < 2


def test_lr_suggested_feeds_overfit() -> None:
    report = nndiag.check(
        str(SAMPLES / "mlp.py"), probes=["overfit"], device="cpu", lr_suggested=True
    )
    assert [r.name for r in report.results] == ["lr-range", "overfit"]
    suggested = report.result("lr-range").metrics["suggested_lr"]
    assert report.result("overfit").metrics["lr"] == suggested


def test_nonlearning_model_keeps_user_modules_intact() -> None:
    model = nn.Sequential(nn.Linear(8, 4))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lr_range(model, batch=class_batch())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
