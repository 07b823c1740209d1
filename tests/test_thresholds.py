"""Verdicts at their thresholds: each probe's `diagnose` on hand-made measurements just inside and
just outside every bound (a pure function of numbers: no model, no training), and the few bounds
applied while measuring on a model built to sit at them.

Every setting of every built-in probe is either a verdict threshold, registered here by the test
that crosses it (`@bound`), or a run parameter listed in RUN_PARAMETERS with why it has no
verdict bound; `test_every_threshold_has_a_boundary_test` fails on a setting that is neither."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
import torch
from torch import nn

from nndiag.core.losses import BaselineKind
from nndiag.probes import (
    activations,
    data,
    dependencies,
    gradients,
    init_loss,
    overfit,
    precision,
    spec,
)
from nndiag.probes import jacobian as jacobian_probe
from nndiag.probes.jacobian import diagnosis as jacobian

from models import class_batch
from probing import codes as result_codes
from probing import run

EPS = 1e-3  # relative step across a bound
F = TypeVar("F", bound=Callable[..., Any])
BOUNDED: dict[str, set[str]] = {}

# Settings that size or steer a run and judge nothing: no verdict changes at a value of theirs.
RUN_PARAMETERS: dict[str, dict[str, str]] = {
    "activations": {
        "dead_examples": "examples per batch the dead-unit statistics read",
        "max_batches": "batches drawn until min_examples are seen",
    },
    "gradients": {"reference_lr": "scales the displayed update_ratio column only"},
    "jacobian": {
        "hutchinson_probes": "estimator sample count (accuracy tested against float64 oracles)",
        "spectral_iterations": "Lanczos products (accuracy tested against an SVD)",
        "spectral_tolerance": "Lanczos stopping rule (accuracy tested against an SVD)",
        "calibration_batches": "batches for the blocks' surface calibration",
        "max_examples": "examples the estimators run on",
    },
    "dependencies": {"causal": "an option: check causality or not"},
    "precision": {
        "formats": "the user's training precision: severity, not a bound",
        "max_examples": "examples run in each format",
        "emulate": "how the formats run (emulation tested against autocast's kernels)",
    },
    "lr-range": {
        "start_lr": "the range's low end",
        "end_lr": "the range's high end",
        "num_steps": "points on the curve",
        "mode": "exponential or linear schedule",
        "repeats": "curves run",
        "smooth_beta": "the displayed EMA's factor",
        "trend_window": "the running median's width (tested against a spike)",
        "skip_start": "points left out at the start",
        "skip_end": "points left out at the end",
        "pool_batches": "fixed batches of the learnability run",
        "sweep_steps": "steps per sweep run",
        "sweep_continue": "steps a sweep run continues",
        "sweep_spacing": "decades between sweep candidates",
        "margin": "the factor applied to the sweep's best LR",
        "divergence_fraction": "the fallback estimate's fraction of the divergence LR (tested "
        "in test_lr_range: estimate == fraction x divergence)",
        "sweep_extensions": "sweep candidates added past an edge",
        "max_skipped_steps": "fp16 scaler skips tolerated in a range run",
    },
    "overfit": {
        "steps": "training steps before the verdict",
        "lr": "the learning rate option",
        "default_lr": "Adam's step size without make_optimizer",
        "examples": "examples memorised",
        "accuracy_every": "how often accuracy is measured",
        "max_extension": "how far a falling run is extended (a cap, then reach_factor judges)",
        "zeroed_baseline": "a switch (off under --budget), not a bound",
    },
}


def bound(probe: str, *settings: str) -> Callable[[F], F]:
    """Register the test as the boundary test of these settings of `probe`."""
    BOUNDED.setdefault(probe, set()).update(settings)
    return lambda test: test


def codes(findings: list[Any]) -> set[str]:
    return {f.code for f in findings}


def test_every_threshold_has_a_boundary_test() -> None:
    from nndiag.probes import builtin

    for name in builtin():
        fields = {f.name for f in dataclasses.fields(spec(name).config)}
        covered = BOUNDED.get(name, set()) | set(RUN_PARAMETERS.get(name, {}))
        assert fields == covered, (name, fields ^ covered)
        assert not BOUNDED.get(name, set()) & set(RUN_PARAMETERS.get(name, {})), name
        sourceless = {
            f.name for f in dataclasses.fields(spec(name).config)
            if f.name in BOUNDED.get(name, set()) and not f.metadata.get("source")
        }  # fmt: skip
        assert not sourceless, (name, sourceless)  # a threshold says where its value comes from


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


@bound("data", "input_rms_max", "input_rms_min")
@pytest.mark.parametrize("limit_name", ["input_rms_max", "input_rms_min"])
def test_input_scale_fires_just_outside_its_band(limit_name: str) -> None:
    config = data.Config()
    limit = getattr(config, limit_name)
    outside = limit * (1 + EPS) if limit_name.endswith("max") else limit * (1 - EPS)
    inside = limit * (1 - EPS) if limit_name.endswith("max") else limit * (1 + EPS)
    assert "input-scale" in codes(data.diagnose(data_measurement(outside, [8, 8]), config))
    assert "input-scale" not in codes(data.diagnose(data_measurement(inside, [8, 8]), config))


@bound("data", "majority_fraction_max")
def test_majority_class_fires_just_above_its_share() -> None:
    config = data.Config()  # majority_fraction_max 0.9
    above = data.diagnose(data_measurement(1.0, [91, 9]), config)  # 0.91
    at = data.diagnose(data_measurement(1.0, [90, 10]), config)  # 0.90: not above
    assert "degenerate-targets" in codes(above) and "degenerate-targets" not in codes(at)


@bound("data", "constant_target_rtol")
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
    dead: float,
    dead_after: float,
    saturated: float = 0.0,
    saturated_after: float = 0.0,
    units: int = 64,
) -> dict[str, Any]:
    return {"site": "net.1", "kind": "relu", "dead_fraction": dead, "dead_after_steps": dead_after,
            "saturated_fraction": saturated, "saturated_after_steps": saturated_after,
            "units": units}  # fmt: skip


@bound("activations", "dead_fraction_max", "dead_sigmas")
@pytest.mark.parametrize("units", [10, 64, 1024])
@pytest.mark.parametrize(
    ("dead", "after", "fires"),
    [(1 + EPS, 1 + EPS, True), (1 - EPS, 1 + EPS, False), (1 + EPS, 1 - EPS, False)],
)
def test_dead_units_need_the_bound_at_init_and_after_the_steps(
    dead: float, after: float, fires: bool, units: int
) -> None:
    """The bound is n·p + k·sqrt(n·p·(1-p)) dead units of n (p = dead_fraction_max, k =
    dead_sigmas), as a share."""
    config = activations.Config()
    p, k = config.dead_fraction_max, config.dead_sigmas
    limit = (units * p + k * math.sqrt(units * p * (1 - p))) / units
    m = activations.Measurement(
        (site(limit * dead, limit * after, units=units),), config.min_examples
    )
    assert ("dead-units" in codes(activations.diagnose(m, config))) is fires


def test_a_few_unit_site_dead_by_chance_is_no_finding() -> None:
    """6 of 8 squeeze-excite units dead (MobileNetV3's, each a coin flip on pooled features)
    is chance; 45 of 64 on a main-path layer is not."""
    config = activations.Config()
    chance = activations.Measurement((site(0.75, 0.75, units=8),), config.min_examples)
    assert codes(activations.diagnose(chance, config)) == set()
    wide = activations.Measurement((site(45 / 64, 45 / 64, units=64),), config.min_examples)
    assert codes(activations.diagnose(wide, config)) == {"dead-units"}


@bound("activations", "min_examples")
def test_dead_units_are_not_judged_on_too_few_examples() -> None:
    config = activations.Config()
    row = site(1.0, 1.0)
    assert codes(activations.diagnose(activations.Measurement((row,), config.min_examples), config))
    few = activations.Measurement((row,), config.min_examples - 1)
    assert activations.diagnose(few, config) == []


@bound("activations", "saturated_fraction_max")
@pytest.mark.parametrize(("scale", "fires"), [(1 + EPS, True), (1 - EPS, False)])
def test_saturated_units_at_their_bound(scale: float, fires: bool) -> None:
    config = activations.Config()
    limit = min(1.0, config.saturated_fraction_max * scale)
    m = activations.Measurement((site(0.0, 0.0, limit, limit),), config.min_examples)
    assert ("saturated-units" in codes(activations.diagnose(m, config))) is fires
    assert math.isfinite(limit)


@bound("activations", "tanh_saturation", "sigmoid_saturation")
@pytest.mark.parametrize("kind", ["tanh", "sigmoid"])
def test_saturation_bands_at_their_bound(kind: str) -> None:
    from nndiag.core.sites import SiteStats

    config = activations.Config()
    edge = config.tanh_saturation if kind == "tanh" else 1 - config.sigmoid_saturation
    stats = SiteStats(kind, config.tanh_saturation, config.sigmoid_saturation)
    stats.add(torch.tensor([edge * (1 + EPS / 10), edge * (1 - EPS / 10)]))
    assert (stats.values, stats.saturated) == (2, 1)


# ---- init-loss -----------------------------------------------------------------------------------


def init_measurement(loss: float, baseline: float, kind: BaselineKind) -> init_loss.Measurement:
    return init_loss.Measurement(
        loss=loss, baseline=baseline, baseline_kind=kind, classes=10, logit_mean=0.0,
        logit_std=1.0, finite_outputs=True, first_nonfinite="", probabilities=False,
        probabilities_to_nll=False, unit_interval=False, loss_calls=("cross_entropy",),
        broadcasts=(), output_shape=(16, 10), target_shape=(16,), ignores_input=False,
        ignores_after_steps=None, head="head", head_convention="",
    )  # fmt: skip


@bound("init-loss", "ce_excess_nats_max")
@pytest.mark.parametrize(("scale", "fires"), [(1 + EPS, True), (1 - EPS, False)])
def test_overconfident_cross_entropy_at_its_bound(scale: float, fires: bool) -> None:
    config = init_loss.Config()
    chance = math.log(10)
    m = init_measurement(chance + config.ce_excess_nats_max * scale, chance, BaselineKind.CHANCE)
    assert ("loss-at-init" in codes(init_loss.diagnose(m, config))) is fires


@bound("init-loss", "mse_ratio_max")
@pytest.mark.parametrize(("scale", "fires"), [(1 + EPS, True), (1 - EPS, False)])
@pytest.mark.parametrize("offset_sq", [0.0, 30.0])
def test_mse_at_init_at_its_bound(scale: float, fires: bool, offset_sq: float) -> None:
    """The bound holds on the MSE less the offset of the means (which the output bias learns at
    once): a large offset on top moves nothing either way."""
    config = init_loss.Config()
    loss = 2.0 * config.mse_ratio_max * scale + offset_sq
    m = init_measurement(loss, 2.0, BaselineKind.VARIANCE)
    m = dataclasses.replace(m, offset_sq=offset_sq)
    assert ("loss-at-init" in codes(init_loss.diagnose(m, config))) is fires


@bound("init-loss", "probability_sum_atol")
def test_rows_summing_to_one_within_the_tolerance_are_probabilities() -> None:
    atol = init_loss.Config().probability_sum_atol
    rows = torch.full((4, 2), 0.5, dtype=torch.float64)
    inside, outside = rows.clone(), rows.clone()
    inside[0, 0] += atol * (1 - 10 * EPS)
    outside[0, 0] += atol * (1 + 10 * EPS)
    assert init_loss._are_probabilities(inside, atol)
    assert not init_loss._are_probabilities(outside, atol)


class _Nudged(nn.Module):
    """Output 1 everywhere, plus `delta` on one entry whenever the input differs from the first
    input it saw: a redrawn input moves the output by exactly `delta` of its largest value."""

    def __init__(self, delta: float) -> None:
        super().__init__()
        self.delta = delta
        self.first: torch.Tensor | None = None
        self.head = nn.Linear(8, 4)  # a parameter, so the model can be copied and trained

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first is None:
            self.first = x.clone()
        out = torch.ones(x.shape[0], 4, dtype=torch.float64)
        out[0, 0] += self.delta * float(not torch.equal(x, self.first))
        return out


@bound("init-loss", "same_output_rtol")
@bound("jacobian", "same_output_rtol")
@pytest.mark.parametrize("probe", ["init-loss", "jacobian"])
def test_an_input_moves_the_output_beyond_same_output_rtol(probe: str) -> None:
    from nndiag.core.dependence import input_that_moves_output

    rtol = spec(probe).config().same_output_rtol
    x = class_batch()[0]
    assert input_that_moves_output(_Nudged(rtol * (1 + 10 * EPS)), x, rtol, 0) == "inputs"
    assert input_that_moves_output(_Nudged(rtol * (1 - 10 * EPS)), x, rtol, 0) is None


# ---- structure -----------------------------------------------------------------------------------


class _Drifting(nn.Module):
    """Each call returns 1 + calls·delta on one entry: two forwards differ by `delta`, relative."""

    def __init__(self, delta: float) -> None:
        super().__init__()
        self.head = nn.Linear(8, 4)
        self.delta, self.calls = delta, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.head(x) * 0 + 1
        return out + torch.zeros_like(out).index_fill_(
            1, torch.tensor([0]), self.calls * self.delta
        )


@bound("structure", "forward_rtol")
@pytest.mark.parametrize(("scale", "fires"), [(1 + 10 * EPS, True), (1 - 10 * EPS, False)])
def test_two_forwards_differ_beyond_forward_rtol(scale: float, fires: bool) -> None:
    rtol = spec("structure").config().forward_rtol
    found = result_codes(run("structure", _Drifting(rtol * scale), class_batch()))
    assert ("nondeterministic-forward" in found) is fires


# ---- gradients -----------------------------------------------------------------------------------


def grad_row(block: int, ratio: float, **extra: Any) -> dict[str, Any]:
    """A trainable weight matrix of block `block` with ‖g‖/‖W‖ = `ratio` and a healthy init."""
    name = f"net.{block}.weight"
    return {"parameter": name, "qualname": name, "module": f"net.{block}", "type": "Linear",
            "trainable": True, "has_grad": True, "zero_grad": False, "flows_after_steps": None,
            "use": "used", "numel": 64, "in_profile": True, "ratio": ratio, "grad_norm": ratio,
            "weight_norm": 1.0, "init_gain": 1.0, "signal_gain": 1.0, "output_gain": 1.0,
            "block_gain": math.nan,
            "feeds_norm": False, "convention": "", "called": True, "init_match": "",
            **extra}  # fmt: skip


def profile(first: float, last: float, blocks: int = 8) -> tuple[dict[str, Any], ...]:
    """Blocks whose first quarter has ratio `first` and the rest `last`."""
    quarter = blocks // 4
    return tuple(grad_row(i, first if i < quarter else last) for i in range(blocks))


def grad_codes(rows: tuple[dict[str, Any], ...], **measured: Any) -> dict[str, str]:
    config = gradients.Config()
    found = gradients.diagnose(gradients.Measurement(rows, 1.0, **measured), config)
    return {f.code: f.severity.value for f in found}


@bound("gradients", "vanish_first_over_last")
@pytest.mark.parametrize(("scale", "fires"), [(1 - EPS, True), (1 + EPS, False)])
def test_vanishing_through_depth_at_its_bound(scale: float, fires: bool) -> None:
    limit = gradients.Config().vanish_first_over_last
    assert ("vanishing-gradients" in grad_codes(profile(limit * scale, 1.0))) is fires


def test_an_output_layer_is_no_reference_for_depth() -> None:
    """A stem at 0.002 and a 0.02-std head at 6.8 with every hidden block near 0.02 (CCT) is no
    depth trend; the same stem under hidden blocks at 10 is (the head is left out, not the
    hidden last quarter)."""
    limit = gradients.Config().vanish_first_over_last
    flat = (grad_row(0, 0.002), *(grad_row(i, 0.02) for i in range(1, 6)), grad_row(6, 6.8))
    assert grad_codes(flat) == {}
    deep = (grad_row(0, limit), *(grad_row(i, 10.0) for i in range(1, 6)), grad_row(6, 6.8))
    assert "vanishing-gradients" in grad_codes(deep)


@bound("gradients", "gate_opening_min")
@pytest.mark.parametrize(("scale", "gated"), [(1 + EPS, True), (1 - EPS, False)])
def test_a_vanishing_profile_that_opens_enough_is_a_gate(scale: float, gated: bool) -> None:
    config = gradients.Config()
    at_init = config.vanish_first_over_last / 100
    after = at_init * config.gate_opening_min * scale  # still below the vanishing bound
    found = grad_codes(profile(at_init, 1.0), vanishing_after_steps=after)
    assert found == ({"gated-at-init": "info"} if gated else {"vanishing-gradients": "warning"})


@bound("gradients", "explode_first_over_last")
@pytest.mark.parametrize(("scale", "fires"), [(1 + EPS, True), (1 - EPS, False)])
def test_exploding_through_depth_at_its_bound_and_confirmed_by_training(
    scale: float, fires: bool
) -> None:
    limit = gradients.Config().explode_first_over_last
    rows = profile(limit * scale, 1.0)
    assert ("exploding-gradients" in grad_codes(rows)) is fires
    if fires:  # settles within the confirmation steps: an info, the model trains
        assert grad_codes(rows, exploding_after_steps=limit * (1 - EPS)) == {
            "exploding-gradients": "info"
        }
        assert grad_codes(rows, exploding_after_steps=limit * scale) == {
            "exploding-gradients": "error"
        }


@bound("gradients", "min_profile_layers")
def test_no_depth_verdict_below_min_profile_layers() -> None:
    needed = gradients.Config().min_profile_layers
    shallow = tuple(grad_row(i, 1e-9 if i == 0 else 1.0) for i in range(needed - 1))
    deep = tuple(grad_row(i, 1e-9 if i == 0 else 1.0) for i in range(needed))
    assert "vanishing-gradients" not in grad_codes(shallow)
    assert "vanishing-gradients" in grad_codes(deep)


@bound("gradients", "init_gain_max", "signal_gain_max")
@pytest.mark.parametrize(
    ("init", "signal", "fires"),
    [(1 + EPS, 1 + EPS, True), (1 - EPS, 1 + EPS, False), (1 + EPS, 1 - EPS, False)],
)
def test_too_large_init_needs_both_gains_beyond_their_bounds(
    init: float, signal: float, fires: bool
) -> None:
    config = gradients.Config()
    big = grad_row(0, 1.0, init_gain=config.init_gain_max * init,
                   signal_gain=config.signal_gain_max * signal)  # fmt: skip
    rows = (big, *(grad_row(i, 1.0) for i in range(1, 4)))
    assert ("init-scale" in grad_codes(rows)) is fires


@bound("gradients", "output_gain_max")
@pytest.mark.parametrize(
    ("init", "signal", "fires"),
    [(1 + EPS, 1 + EPS, True), (1 - EPS, 1 + EPS, False), (1 + EPS, 1 - EPS, False)],
)
def test_the_output_layer_is_too_large_only_beyond_its_own_bound(
    init: float, signal: float, fires: bool
) -> None:
    bound = gradients.Config().output_gain_max
    head = grad_row(3, 1.0, init_gain=bound * init, signal_gain=bound * signal)
    rows = (*(grad_row(i, 1.0) for i in range(3)), head)  # the last layer called
    assert ("init-scale" in grad_codes(rows)) is fires
    hidden = grad_row(0, 1.0, init_gain=bound * init, signal_gain=bound * signal)
    assert "init-scale" in grad_codes((hidden, *rows[1:3], grad_row(3, 1.0)))  # 3.0 holds there


def test_the_init_scale_message_names_the_bound_that_decided() -> None:
    """An output layer at 5 is inside its own bound 8, so quoting the band [0.02, 3.0] beside
    it would contradict the verdict; each message quotes the bound its worst layer failed."""
    config = gradients.Config()

    def message(rows: tuple[dict[str, Any], ...]) -> str:
        found = gradients.diagnose(gradients.Measurement(rows, 1.0), config)
        return next(f.message for f in found if f.code == "init-scale")

    body = tuple(grad_row(i, 1.0) for i in range(3))
    head = grad_row(3, 1.0, init_gain=10.0, signal_gain=10.0)
    assert f"above {config.output_gain_max}, the output layer's bound" in message((*body, head))
    hidden = grad_row(0, 1.0, init_gain=5.0, signal_gain=5.0)
    text = message((hidden, *body[1:], grad_row(3, 1.0)))
    assert f"outside [{config.init_gain_min}, {config.init_gain_max}]" in text
    assert "output layer" not in text


@bound("gradients", "init_gain_min", "signal_gain_min")
@pytest.mark.parametrize(
    ("init", "signal", "fires"),
    [(1 - EPS, 1 - EPS, True), (1 + EPS, 1 - EPS, False), (1 - EPS, 1 + EPS, False)],
)
def test_too_small_init_needs_both_gains_below_their_bounds(
    init: float, signal: float, fires: bool
) -> None:
    config = gradients.Config()
    small = grad_row(0, 1.0, init_gain=config.init_gain_min * init,
                     signal_gain=config.signal_gain_min * signal,
                     output_gain=config.signal_gain_min * signal)  # fmt: skip
    rows = (small, *(grad_row(i, 1.0) for i in range(1, 4)))  # not the output layer
    assert ("init-scale" in grad_codes(rows)) is fires


@bound("gradients", "untrained_share_min")
@pytest.mark.parametrize(("matching", "severity"), [(2, "warning"), (1, "info")])
def test_frozen_untrained_share_at_its_bound(matching: int, severity: str) -> None:
    share = gradients.Config().untrained_share_min  # 0.5: 2 of 4 frozen tensors at init
    assert share == 0.5
    frozen = tuple(
        grad_row(i, 1.0, trainable=False, init_match="default init" if i < matching else "")
        for i in range(4)
    )
    rows = (*frozen, *(grad_row(i, 1.0) for i in range(4, 8)))
    assert grad_codes(rows)["frozen-parameters"] == severity


# ---- jacobian ------------------------------------------------------------------------------------


def jacobian_measurement(
    total: float,
    blocks: int = 6,
    total_gain_after_steps: float | None = None,
    **measured: Any,
) -> Any:
    rows = tuple({"block": f"b{i}", "grad_norm": 1.0, "gain": 1.0} for i in range(blocks))
    depth = jacobian_probe.Depth(total, 0.0, total_gain_after_steps)
    return jacobian_probe.Measurement(
        "input", rows, depth=depth, **{"nonlinearity": 1.0, **measured}
    )


def jacobian_codes(m: Any) -> dict[str, str]:
    return {f.code: f.severity.value for f in jacobian.diagnose(m, jacobian_probe.Config())}


@bound("jacobian", "gain_explode")
@pytest.mark.parametrize(("scale", "fires"), [(1 + EPS, True), (1 - EPS, False)])
def test_jacobian_exploding_through_depth_at_its_bound(scale: float, fires: bool) -> None:
    limit = jacobian_probe.Config().gain_explode
    found = jacobian_codes(jacobian_measurement(limit * scale))
    assert (found.get("exploding-gradients") == "error") is fires
    settles = jacobian_measurement(limit * 2, total_gain_after_steps=limit * scale)
    assert jacobian_codes(settles) == {"exploding-gradients": "error" if fires else "info"}


@bound("jacobian", "gain_vanish")
@pytest.mark.parametrize(("scale", "fires"), [(1 - EPS, True), (1 + EPS, False)])
def test_jacobian_vanishing_through_depth_at_its_bound(scale: float, fires: bool) -> None:
    limit = jacobian_probe.Config().gain_vanish
    assert ("vanishing-gradients" in jacobian_codes(jacobian_measurement(limit * scale))) is fires


@bound("jacobian", "gate_opening_min")
@pytest.mark.parametrize(("scale", "gated"), [(1 + EPS, True), (1 - EPS, False)])
def test_jacobian_gain_that_opens_enough_is_a_gate(scale: float, gated: bool) -> None:
    config = jacobian_probe.Config()
    at_init = config.gain_vanish / 100
    m = jacobian_measurement(
        at_init, total_gain_after_steps=at_init * config.gate_opening_min * scale
    )
    assert jacobian_codes(m) == (
        {"gated-at-init": "info"} if gated else {"vanishing-gradients": "warning"}
    )


@bound("jacobian", "min_profile_blocks")
def test_no_jacobian_depth_verdict_below_min_profile_blocks() -> None:
    needed = jacobian_probe.Config().min_profile_blocks
    assert jacobian_codes(jacobian_measurement(1e-9, blocks=needed - 1)) == {}
    assert jacobian_codes(jacobian_measurement(1e-9, blocks=needed)) == {
        "vanishing-gradients": "warning"
    }


@bound("jacobian", "nonlinearity_min")
@pytest.mark.parametrize(("scale", "fires"), [(1 - EPS, True), (1 + EPS, False)])
def test_affine_network_at_its_bound(scale: float, fires: bool) -> None:
    limit = jacobian_probe.Config().nonlinearity_min
    m = jacobian_measurement(1.0, nonlinearity=limit * scale)
    assert ("no-nonlinearity" in jacobian_codes(m)) is fires
    opens = jacobian_measurement(1.0, nonlinearity=limit * scale, nonlinearity_after_steps=limit)
    assert "no-nonlinearity" not in jacobian_codes(opens)


def temporal(growth: float, horizon: int, steps: int = 20, later: float | None = None) -> Any:
    memory = jacobian_probe.Memory(horizon, steps, growth, recurrent=True,
                                   earliest_over_last_after_steps=later)  # fmt: skip
    return jacobian_measurement(1.0, memory=memory)


@bound("jacobian", "temporal_growth_max")
@pytest.mark.parametrize(("scale", "fires"), [(1 + EPS, True), (1 - EPS, False)])
def test_exploding_through_time_at_its_bound(scale: float, fires: bool) -> None:
    limit = jacobian_probe.Config().temporal_growth_max
    assert ("exploding-gradients" in jacobian_codes(temporal(limit * scale, 20))) is fires
    settles = temporal(limit * 2, 20, later=limit * (1 - EPS))
    assert jacobian_codes(settles) == {"exploding-gradients": "info"}


@bound("jacobian", "short_horizon_fraction", "horizon_fraction")
def test_forgetting_through_time_at_its_bounds() -> None:
    from nndiag.probes.jacobian.sequences import memory_horizon

    config = jacobian_probe.Config()
    f = config.horizon_fraction
    assert memory_horizon([f * (1 - EPS), f * (1 + EPS), 1.0], f) == 2
    assert memory_horizon([f * (1 + EPS), f * (1 + EPS), 1.0], f) == 3
    steps = 100
    short = math.ceil(config.short_horizon_fraction * steps)  # the first horizon not short
    assert "vanishing-gradients" in jacobian_codes(temporal(1.0, short - 1, steps))
    assert "vanishing-gradients" not in jacobian_codes(temporal(1.0, short, steps))


@bound("jacobian", "min_sequence")
def test_time_is_profiled_from_min_sequence_steps() -> None:
    needed = jacobian_probe.Config().min_sequence
    rnn = nn.RNN(4, 8, batch_first=True)

    class Last(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn, self.head = rnn, nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0][:, -1])

    for steps, profiled in ((needed - 1, False), (needed, True)):
        batch = (torch.randn(8, steps, 4), torch.randint(0, 3, (8,)))
        result = run("jacobian", Last(), batch)
        assert ("memory_horizon" in result.metrics) is profiled, steps


# ---- dependencies --------------------------------------------------------------------------------


def dependency_measurement(leak: float, change: float) -> dependencies.Measurement:
    return dependencies.Measurement(
        examples=4, mixing=({"example": 0, "own": 1.0, "other": leak, "leak": leak},),
        mixing_at=None, causal_checked=True, causal_reason="targets are next tokens",
        positions=({"example": 0, "position": 1, "own": 1.0, "later": change, "change": change},),
        leak_at=None, batch_norm=False,
    )  # fmt: skip


@bound("dependencies", "leak_rtol")
@pytest.mark.parametrize(("scale", "fires"), [(1 + EPS, True), (1 - EPS, False)])
def test_batch_mixing_and_causal_leaks_at_their_bound(scale: float, fires: bool) -> None:
    config = dependencies.Config()
    level = config.leak_rtol * scale
    found = codes(dependencies.diagnose(dependency_measurement(level, level), config))
    assert found == ({"batch-mixing", "causal-leak"} if fires else set())


def test_a_leak_is_placed_once() -> None:
    """A module is named by `where` (the renderer's "in MODULE"), not again in the message; the
    model's own forward, which `where` can only call "model", is spelled out."""
    from nndiag.core.leaks import Place

    config = dependencies.Config()
    level = config.leak_rtol * 2
    in_module = dataclasses.replace(
        dependency_measurement(level, level), leak_at=Place("body.attn", "body")
    )
    _mixing, leak = dependencies.diagnose(in_module, config)
    assert leak.where == ("body.attn",) and "body.attn" not in leak.message
    outside = dataclasses.replace(in_module, leak_at=Place(), mixing_at=Place())
    for found in dependencies.diagnose(outside, config):
        assert found.where == ("model",)
        assert found.message.endswith(
            "; it appears in the model's own forward, outside its submodules"
        )


@bound("dependencies", "shift_match_min")
def test_targets_are_next_tokens_from_shift_match_min() -> None:
    config = dependencies.Config()
    inputs = torch.arange(1, 201).reshape(1, 200)
    targets = torch.cat([inputs[:, 1:], torch.zeros(1, 1, dtype=torch.long)], dim=1)
    needed = math.ceil(config.shift_match_min * 199)  # of the 199 compared positions
    just = targets.clone()
    just[0, : 199 - needed] = -5  # exactly `needed` match
    fewer = targets.clone()
    fewer[0, : 200 - needed] = -5
    assert dependencies.shifted_input(inputs, just, config, -100) == 0
    assert dependencies.shifted_input(inputs, fewer, config, -100) is None


# ---- precision -----------------------------------------------------------------------------------


@bound("precision", "flushed_share_max")
@pytest.mark.parametrize(("scale", "fires"), [(1 + EPS, True), (1 - EPS, False)])
def test_underflow_at_its_bound(scale: float, fires: bool) -> None:
    config = precision.Config()
    ok = precision.Run("", 1.0, "", "", True, 1.0, 0.0)
    fp16 = dataclasses.replace(ok, flushed=config.flushed_share_max * scale)
    m = precision.Measurement(
        {"fp32": ok, "bf16": ok, "fp16": fp16}, (), 0.0, ("bf16", "fp16"), "cpu", True
    )
    assert ("precision-underflow" in codes(precision.diagnose(m, config))) is fires


# ---- overfit -------------------------------------------------------------------------------------


@bound("overfit", "pass_loss_fraction", "pass_accuracy")
def test_memorised_at_the_pass_line_and_accuracy() -> None:
    config = overfit.Config()
    line = config.pass_loss_fraction * 2.0
    assert overfit.memorised(line, config.pass_accuracy, line, config)
    assert not overfit.memorised(line * (1 + EPS), 1.0, line, config)
    assert not overfit.memorised(line, config.pass_accuracy * (1 - EPS), line, config)
    assert overfit.memorised(line, math.nan, line, config)  # no class scores: the loss decides


def falling(start: float, rate_last_fifth: float, steps: int = 301) -> list[float]:
    """Flat at `start`, then falling by the factor `rate_last_fifth` over the last fifth."""
    tail = steps // 5  # the window overfit's rules read
    flat = [start] * (steps - tail)
    return flat + [start * rate_last_fifth ** (i / (tail - 1)) for i in range(tail)]


@bound("overfit", "plateau_improvement")
@pytest.mark.parametrize(("scale", "verdict"), [(1 - EPS, "plateau"), (1 + EPS, "falling")])
def test_plateau_at_its_bound(scale: float, verdict: str) -> None:
    config = overfit.Config()
    losses = falling(1.0, 1 - config.plateau_improvement * scale)
    losses[0] = 2.0  # the run fell before: not 'rose'
    found = overfit.verdict(overfit_measurement(losses, threshold=1e-6), overfit.Config())
    assert (found == "plateau") is (verdict == "plateau")


@bound("overfit", "reach_factor")
@pytest.mark.parametrize(("scale", "verdict"), [(1 - EPS, "slow"), (1 + EPS, "crawling")])
def test_slow_or_crawling_at_reach_factor(scale: float, verdict: str) -> None:
    config = overfit.Config()
    losses = falling(1.0, 0.5)
    losses[0] = 2.0
    tail = len(losses) // 5
    per_step = math.log(losses[-1] / losses[-tail]) / (tail - 1)  # the rate _within_reach reads
    steps_left = config.steps * config.reach_factor * scale
    threshold = losses[-1] * math.exp(per_step * steps_left)
    assert overfit.verdict(overfit_measurement(losses, threshold), overfit.Config()) == verdict


def overfit_measurement(losses: list[float], threshold: float) -> overfit.Measurement:
    rows = tuple({"step": i, "loss": v, "accuracy": math.nan} for i, v in enumerate(losses))
    run_ = overfit.Run(rows, None, None, 0)
    return overfit.Measurement(run_, None, threshold, 3e-3, "default", 16, False)


@bound("overfit", "inputs_help_fraction")
@pytest.mark.parametrize(("scale", "severity"), [(1 - EPS, "info"), (1 + EPS, "error")])
def test_the_inputs_help_below_inputs_help_fraction(scale: float, severity: str) -> None:
    """Ending below `inputs_help_fraction` of the zeroed-input run's loss: it learns from its
    inputs (an info about a floor); above it, stuck (an error)."""
    config = overfit.Config()
    losses = falling(2.0, 0.5 * config.inputs_help_fraction * scale)
    zeroed = overfit.Run(tuple({"step": 0, "loss": v, "accuracy": math.nan}
                               for v in falling(2.0, 0.5)), None, None, 0)  # fmt: skip
    m = dataclasses.replace(overfit_measurement(losses, 1e-6), zeroed=zeroed)
    [found] = overfit.diagnose(m, config)
    assert found.severity.value == severity


# ---- lr-range ------------------------------------------------------------------------------------


def lr_curve(points: int) -> tuple[list[float], list[float]]:
    """A valley: flat, a logistic fall, a blow-up; noise-free."""
    lrs = [1e-6 * 1e6 ** (i / (points - 1)) for i in range(points)]
    losses = [2.0 - 1.0 / (1 + math.exp(-3 * (math.log10(lr) + 3))) + max(0.0, math.log10(lr) + 1) ** 2
              for lr in lrs]  # fmt: skip
    return lrs, losses


@bound("lr-range", "min_points")
def test_an_estimate_needs_min_points() -> None:
    from nndiag.probes.lr_range import Config
    from nndiag.probes.lr_range.analysis import analyse

    config = Config()
    for points, estimated in ((config.min_points - 1, False), (config.min_points, True)):
        lrs, losses = lr_curve(points)
        result = analyse(lrs, losses, lrs[0], lrs[-1], config)
        assert ("finite points" in result.why) is not estimated, points


@bound("lr-range", "noise_sigmas")
def test_a_descent_is_clear_from_noise_sigmas() -> None:
    import random

    from nndiag.probes.lr_range import Config
    from nndiag.probes.lr_range.analysis import analyse

    lrs, losses = lr_curve(100)
    rng = random.Random(0)
    noisy = [v + rng.gauss(0, 0.05) for v in losses]
    significance = analyse(lrs, noisy, lrs[0], lrs[-1], Config()).descent.significance
    for scale, clear in ((1 - EPS, True), (1 + EPS, False)):
        config = dataclasses.replace(Config(), noise_sigmas=significance * scale)
        assert analyse(lrs, noisy, lrs[0], lrs[-1], config).clear is clear


@bound("lr-range", "edge_fraction")
def test_edge_fraction_of_the_range_is_never_suggested() -> None:
    from nndiag.probes.lr_range import Config
    from nndiag.probes.lr_range.rules import in_log_range

    f = Config().edge_fraction
    lo, hi = 1e-6, 1.0  # 6 decades
    assert in_log_range(lo * 10 ** (6 * f * (1 + EPS)), lo, hi, f)
    assert not in_log_range(lo * 10 ** (6 * f * (1 - EPS)), lo, hi, f)


@bound("lr-range", "diverge_factor")
def test_divergence_where_the_trend_passes_diverge_factor_times_its_lowest() -> None:
    from nndiag.probes.lr_range import Config
    from nndiag.probes.lr_range.rules import divergence_lr

    factor = Config().diverge_factor
    lrs = [1e-4, 1e-3, 1e-2, 1e-1]
    below = [1.0, 0.5, 0.5 * factor * (1 - EPS), 0.9]  # the start bounds it too: 1.0
    assert divergence_lr(lrs, below, 1, factor) is None
    above = [0.1, 0.05, 0.05 * factor * (1 + EPS), 0.2]
    assert divergence_lr(lrs, above, 1, factor) == 1e-2


@bound("lr-range", "sign_test_sigmas")
def test_trained_below_chance_by_sign_test_sigmas() -> None:
    from nndiag.probes.lr_range import Config, _trained_below
    from nndiag.probes.lr_range.running import Trial

    config = Config()
    n = 64  # losses in the second half
    needed = math.ceil(n / 2 + config.sign_test_sigmas * math.sqrt(n) / 2)
    for below, learns in ((needed, True), (needed - 1, False)):
        late = [0.5] * below + [1.5] * (n - below)
        assert _trained_below([Trial(1e-3, None, [1.0] * n + late)], 1.0, config) is learns


@bound("lr-range", "pool_depth_min")
def test_learns_on_the_pool_below_pool_depth_min() -> None:
    from nndiag.probes.lr_range import Config, learns_on_pool
    from nndiag.probes.lr_range.analysis import Analysis
    from nndiag.probes.lr_range.rules import Descent

    config = Config()
    chance = 2.0
    for scale, learns in ((1 + EPS, True), (1 - EPS, False)):
        lowest = chance * (1 - config.pool_depth_min * scale)
        descent = Descent(chance, lowest, 5, 0.01, chance - lowest, 100.0)
        assert learns_on_pool(Analysis((), (), descent, True), chance, config) is learns


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
