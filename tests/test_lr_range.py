"""The LR range test: rules and the estimate on synthetic curves, the probe on real models."""

from __future__ import annotations

import itertools
import math
import random
from typing import ClassVar

import pytest
import torch
from torch import nn

import nndiag
from nndiag.core.stats import running_median
from nndiag.probes.lr_range import Config, Learnable, Mode
from nndiag.probes.lr_range.analysis import analyse, bracket, refine, sweep_best
from nndiag.probes.lr_range.rules import minimum_over_ten, smooth, steepest, valley
from nndiag.probes.lr_range.running import schedule

from conftest import SAMPLES
from models import class_batch, mlp

LRS = [1e-7 * (1e8) ** (i / 99) for i in range(100)]
CONFIG = Config()


def valley_curve(
    centre: float = 1e-3, depth: float = 2.0, blowup: float = 1.0, noise: float = 0.0
) -> list[float]:
    """Flat at 3, a logistic drop of `depth` centred at `centre`, then a rise past `blowup`."""
    rng = random.Random(0)
    out = []
    for lr in LRS:
        x = math.log10(lr)
        drop = depth / (1 + math.exp(-(x - math.log10(centre)) * 3))
        rise = max(0.0, x - math.log10(blowup)) ** 2 * 20
        out.append(3.0 - drop + rise + rng.gauss(0, noise))
    return out


def test_steepest_is_the_steepest_point_in_log_lr() -> None:
    pick = steepest(LRS, valley_curve(centre=1e-4), CONFIG.skip_start, CONFIG.skip_end)
    assert pick is not None and abs(math.log10(pick) - (-4)) < 0.2


def test_minimum_over_ten_and_valley_sit_before_the_blowup() -> None:
    curve = valley_curve(centre=1e-4, blowup=1e-1)
    low = minimum_over_ten(LRS, curve)
    assert low is not None and 1e-3 < low < 1e-2  # the minimum is just before 0.1
    pick = valley(LRS, curve)
    assert pick is not None and 1e-6 < pick < 1e-1


def test_nan_tail_is_dropped_and_the_estimate_stays_in_the_descent() -> None:
    curve = valley_curve(centre=1e-4, blowup=1e-2, noise=0.01)
    curve[80:] = [math.nan] * 20
    result = analyse(LRS, curve, LRS[0], LRS[-1], CONFIG)
    assert result.clear and result.estimate is not None and result.source == "rules"
    lowest = min(range(80), key=curve.__getitem__)
    assert LRS[0] <= result.estimate <= LRS[lowest]


def test_noisy_plateau_has_no_clear_descent() -> None:
    rng = random.Random(0)
    flat = [2.0 + rng.gauss(0, 0.02) for _ in LRS]
    result = analyse(LRS, flat, LRS[0], LRS[-1], CONFIG)
    assert not result.clear and result.estimate is None
    assert "noise" in result.why


def test_a_small_fall_clear_against_the_noise_is_a_fall() -> None:
    # 3% lower at the bottom of the valley, with batch noise of 0.2%: a real descent.
    curve = valley_curve(centre=1e-3, depth=0.09, blowup=1.0, noise=0.006)
    result = analyse(LRS, curve, LRS[0], LRS[-1], CONFIG)
    assert result.clear and result.descent is not None and result.descent.depth < 0.05


def test_never_an_edge_suggestion() -> None:
    # The only descent is in the first points: noise near the start, no valley afterwards.
    curve = [3.0 - (0.5 if i < 6 else 0) for i in range(100)]
    curve = [v + 2.0 * max(0, i - 60) for i, v in enumerate(curve)]
    result = analyse(LRS, curve, LRS[0], LRS[-1], CONFIG)
    # Not the early dip: the estimate comes from the blow-up (a fraction of where it diverges).
    assert result.source == "divergence" and result.estimate is not None
    assert result.estimate >= LRS[0] * 10 ** (0.1 * 8)


def test_divergence_fallback_without_a_descent() -> None:
    # Flat, then a clear blow-up at 1e-2: the estimate is a fraction of the divergence point.
    curve = [2.0 + (0.0 if lr < 1e-2 else 5.0 * math.log10(lr / 1e-2) + 1) for lr in LRS]
    result = analyse(LRS, curve, LRS[0], LRS[-1], CONFIG)
    assert result.source == "divergence" and result.divergence is not None
    assert result.estimate == pytest.approx(CONFIG.divergence_fraction * result.divergence)


def test_too_few_points_give_no_estimate() -> None:
    result = analyse(LRS[:5], valley_curve()[:5], LRS[0], LRS[-1], CONFIG)
    assert result.estimate is None and "finite points" in result.why


def test_sweep_best_and_its_placement() -> None:
    assert sweep_best({1e-3: 1.0, 3e-3: 0.5, 1e-2: 0.9}) == (3e-3, "interior")
    assert sweep_best({1e-3: 0.4, 3e-3: 0.5}) == (1e-3, "low edge")
    assert sweep_best({1e-3: math.inf, 3e-3: math.inf}) == (None, "none")
    # A parabola through three points in log10(lr): its vertex lies between the neighbours.
    best = refine({1e-3: 1.0, 3.16e-3: 0.5, 1e-2: 0.6}, 3.16e-3)
    assert 3.16e-3 < best < 1e-2
    # Without a neighbour on each side (or with a diverged one) the grid point stands.
    assert refine({1e-3: 1.0, 3.16e-3: 0.5}, 3.16e-3) == 3.16e-3
    assert refine({1e-3: 1.0, 3.16e-3: 0.5, 1e-2: math.inf}, 3.16e-3) == 3.16e-3


def test_the_second_round_brackets_the_best_from_both_sides() -> None:
    scores = {1e-4: 2.0, 1e-3: 0.7, 1e-2: 0.5, 1e-1: 0.9, 1.0: 3.0}
    assert bracket(scores) == [1e-3, 1e-2, 1e-1]
    assert bracket({1e-3: 0.4, 1e-2: 0.5, 1e-1: 0.9}) == [1e-3, 1e-2]  # best at the low edge
    assert bracket({}) == []


def test_running_median_removes_a_spike_without_lag() -> None:
    values = [float(i) for i in range(20)]
    values[10] = 1000.0
    trend = running_median(values, CONFIG.trend_window)
    assert trend[10] == pytest.approx(10.0, abs=1.0)
    assert trend[5] == 5.0  # a straight line is unchanged: no lag


def test_ema_lags_and_is_bias_corrected() -> None:
    assert smooth([5.0, 5.0, 5.0], 0.98) == pytest.approx([5.0, 5.0, 5.0])  # no pull toward 0
    step = smooth([1.0] * 10 + [0.0] * 10, 0.98)
    assert step[-1] > 0.3  # 10 steps after the drop the EMA has not caught up


def test_schedules_hit_both_ends() -> None:
    for linear in (False, True):
        assert schedule(0, 50, 1e-6, 1.0, linear) == pytest.approx(1e-6)
        assert schedule(49, 50, 1e-6, 1.0, linear) == pytest.approx(1.0)
    assert schedule(1, 3, 1e-6, 1.0, False) == pytest.approx(1e-3)
    assert schedule(1, 3, 0.0, 1.0, True) == pytest.approx(0.5)


def lr_range(target, **options):
    report = nndiag.check(target, probes=["lr-range"], device="cpu", **options)
    result = report.result("lr-range")
    assert result.status.value == "ok", result.error
    return result


def test_healthy_mlp_gets_a_confident_suggestion() -> None:
    result = lr_range(str(SAMPLES / "mlp.py"))
    m = result.metrics
    assert m["suggested_lr"] is not None and m["confidence"] in ("medium", "high")
    assert 1e-4 < m["suggested_lr"] < 1.0
    assert m["learnable"] == Learnable.YES
    assert not result.findings
    assert f"at batch {m['batch_size']}" in result.headline


def test_random_labels_are_unlearnable_data_with_a_suggestion() -> None:
    def make_batch(n):
        return torch.randn(n, 8), torch.randint(0, 4, (n,))

    result = lr_range(mlp(width=64), make_batch=make_batch)
    assert [f.code for f in result.findings] == ["unlearnable-data"]
    assert result.findings[0].severity.value == "info"
    assert result.metrics["suggested_lr"] is not None


class Detached(nn.Module):
    """Its output never depends on a trainable parameter: no learning rate can lower the loss."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(8, 4)
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return self.lin(x).detach() + 0 * self.gate


@pytest.mark.parametrize("init", [0, 3])  # init 3 once got a suggestion beside the finding
def test_a_model_that_cannot_learn_on_learnable_data_is_unstable(init: int) -> None:
    def make_batch(n):
        x = torch.randn(n, 8)
        return x, x[:, :4].argmax(dim=1)

    torch.manual_seed(init * 7)
    torch.randn(init * 13)
    result = lr_range(Detached(), make_batch=make_batch)
    assert [f.code for f in result.findings] == ["lr-range-unstable"]
    assert result.metrics["suggested_lr"] is None and result.metrics["learnable"] == Learnable.NO


def test_the_users_batch_size_is_the_default() -> None:
    def make_batch(batch_size: int = 48):
        return class_batch(batch=batch_size)

    result = lr_range(mlp(), make_batch=make_batch, range_steps=30)
    assert result.metrics["batch_size"] == 48
    assert result.metrics["batch_origin"] == "make_batch's default"
    assert any("x B/48" in note for note in result.notes)


class RecordingSGD(torch.optim.SGD):
    seen: ClassVar[list[list[float]]] = []

    def step(self, closure=None):  # type: ignore[override]
        RecordingSGD.seen.append([g["lr"] for g in self.param_groups])
        return super().step(closure)


def test_parameter_groups_keep_their_ratio_and_linear_mode() -> None:
    RecordingSGD.seen = []

    def make_optimizer(params):
        params = list(params)
        return RecordingSGD(
            [{"params": params[:2]}, {"params": params[2:], "lr": 0.01}], lr=0.1, momentum=0.9
        )

    result = lr_range(
        mlp(),
        batch=class_batch(),
        make_optimizer=make_optimizer,
        range_mode=Mode.LINEAR,
        lr_start=1e-4,
        lr_end=1e-2,
        range_steps=20,
        settings={"lr-range": {"sweep_steps": 0}},
    )
    range_steps = [lrs for lrs in RecordingSGD.seen if lrs[0] <= 1e-2 + 1e-12][
        :20
    ]  # not the timing steps
    assert len(range_steps) >= 10
    for first, second in range_steps:
        assert second == pytest.approx(first / 10)
    gaps = [b - a for a, b in itertools.pairwise(s[0] for s in range_steps[:5])]
    assert max(gaps) == pytest.approx(min(gaps))  # linear ramp
    assert "RecordingSGD" in result.metrics["optimizer"]


def test_an_optimizer_the_test_cannot_drive_gets_a_clear_message() -> None:
    """Refused with the contract, before any probe runs (exit 2 on the CLI)."""
    from nndiag.errors import ContractError

    with pytest.raises(ContractError, match="LBFGS needs a closure"):
        nndiag.check(mlp(), batch=class_batch(), probes=["lr-range"],
                     make_optimizer=lambda p: torch.optim.LBFGS(p))  # fmt: skip


def test_repeats_report_every_curve() -> None:
    result = lr_range(str(SAMPLES / "mlp.py"), repeats=2, range_steps=40)
    assert {r["run"] for r in result.table("curve").rows} == {0, 1}


def test_lr_suggested_feeds_overfit() -> None:
    report = nndiag.check(str(SAMPLES / "mlp.py"), probes=["overfit"], device="cpu", lr="suggested")
    assert [r.name for r in report.results] == ["lr-range", "overfit"]
    suggested = report.result("lr-range").metrics["suggested_lr"]
    assert report.result("overfit").metrics["lr"] == suggested


def test_nan_mid_range_stops_the_curve_without_poisoning_it() -> None:
    class Fragile(nn.Module):
        """Finite until the weights grow, then NaN (a log of a negative number)."""

        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def forward(self, x):
            out = self.net(x)
            return torch.where(out.abs().max() > 50, torch.log(-out.abs() - 1), out)

    result = lr_range(Fragile(), batch=class_batch())
    rows = result.table("curve").rows
    assert all(math.isfinite(r["loss"]) for r in rows)
    assert "non-finite loss" in result.metrics["stopped"] or rows[-1]["lr"] < 10


def test_a_confidence_below_high_says_what_would_raise_it() -> None:
    import dataclasses

    from nndiag.probes import spec
    from nndiag.probes.lr_range import Confidence, Learnable, Measurement, confidence, present
    from nndiag.probes.lr_range.analysis import Placement

    from probing import config, context

    ctx = context(mlp(), class_batch())
    settings = config("lr-range", num_steps=40, sweep_steps=0)
    measured: Measurement = spec("lr-range").measure(ctx, settings)
    learnable = dataclasses.replace(measured, learnable=Learnable.YES)
    edge = dataclasses.replace(learnable, placement=Placement.LOW_EDGE)
    assert confidence(edge, settings) is Confidence.MEDIUM
    notes = [n for n in present(edge, settings).notes if n.startswith("confidence medium")]
    assert notes == [
        "confidence medium: the sweep's best sat at its low edge; to raise it, set lr-range "
        "start_lr lower so that the sweep brackets the pick from both sides"
    ]
    high = dataclasses.replace(learnable, placement=Placement.INTERIOR)
    assert confidence(high, settings) is Confidence.HIGH
    assert not [n for n in present(high, settings).notes if n.startswith("confidence")]
    cut = dataclasses.replace(measured, placement=Placement.RULES_ONLY, learnable=Learnable.UNKNOWN)
    assert confidence(cut, settings) is Confidence.LOW
    assert any("--budget" in n for n in present(cut, settings).notes)
