"""The budget plan: in training steps, the same on every machine, cut to fit, and honest when it
cannot fit."""

from __future__ import annotations

import math

import pytest

import nndiag
from nndiag import budget
from nndiag.budget import Budget
from nndiag.errors import OptionError
from nndiag.probes import registry

from conftest import SAMPLES

SPECS = registry()
CONFIGS = {s.name: s.config() for s in SPECS}
# GPT-2 small, batch 8 of 128 tokens: about 0.3 TFLOP a training step.
GPT2_REFERENCE_S = budget.reference_step_s(3e11)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", Budget(seconds=90)), ("90", Budget(seconds=90)), (90, Budget(seconds=90)),
        ("200steps", Budget(steps=200)), ("1 step", Budget(steps=1)), ("0", Budget(seconds=0)),
        (None, Budget()),
    ],
)  # fmt: skip
def test_budget_parses_seconds_and_steps(text: object, expected: Budget) -> None:
    assert budget.parse(text) == expected


@pytest.mark.parametrize("text", ["-1", "fast", "inf", "10min", "nan"])
def test_a_bad_budget_is_an_option_error(text: str) -> None:
    with pytest.raises(OptionError, match="invalid budget"):
        budget.parse(text)


def test_no_cut_without_a_limit_or_when_it_fits() -> None:
    unlimited = budget.plan(SPECS, CONFIGS, 10.0, Budget(seconds=0), GPT2_REFERENCE_S)
    assert unlimited.cuts == {} and unlimited.planned_steps == unlimited.estimate_steps
    tiny = budget.reference_step_s(1e6)  # a small MLP: thousands of steps fit the floor
    roomy = budget.plan(SPECS, CONFIGS, 1e-3, Budget(), tiny)
    assert roomy.cuts == {} and roomy.budget_steps == budget.DEFAULT_FLOOR_S / tiny


@pytest.mark.parametrize("steps", [70.0, 120.0, 200.0])
def test_a_cut_plan_fits_and_uses_most_of_the_budget(steps: float) -> None:
    p = budget.plan(SPECS, CONFIGS, 0.5, Budget(steps=steps), GPT2_REFERENCE_S)
    assert p.estimate_steps > steps and p.cuts
    assert p.planned_steps <= steps
    assert p.planned_steps >= 0.7 * steps  # the factor is the largest that fits, not a first guess
    for name, config in p.configs.items():  # every cut config is a valid, cheaper one
        spec = next(s for s in SPECS if s.name == name)
        assert spec.cost(config) <= spec.cost(CONFIGS[name])


def test_seconds_are_priced_from_the_measured_step() -> None:
    p = budget.plan(SPECS, CONFIGS, 0.5, Budget(seconds=60), GPT2_REFERENCE_S)
    assert p.budget_steps == 120 and p.planned_steps <= 120


def test_a_budget_below_every_probe_s_minimum_says_so() -> None:
    p = budget.plan(SPECS, CONFIGS, 10.0, Budget(steps=6), GPT2_REFERENCE_S)
    assert p.cuts and p.planned_steps > p.budget_steps  # the minimum plan, reported as it is
    assert "cut to about" in budget.describe(p)


def test_the_default_budget_holds_the_minimum_plan_of_a_large_model() -> None:
    p = budget.plan(SPECS, CONFIGS, 10.4, Budget(), GPT2_REFERENCE_S)
    assert (
        p.planned_steps
        <= p.budget_steps
        == max(budget.DEFAULT_STEPS, budget.DEFAULT_FLOOR_S / GPT2_REFERENCE_S)
    )


@pytest.mark.parametrize("slower", [1.0, 5.0])
def test_the_default_plan_does_not_depend_on_the_machine_s_speed(slower: float) -> None:
    """The same model on a machine 1x or 5x slower: the same plan, in steps."""
    fast = budget.plan(SPECS, CONFIGS, 2.0, Budget(), GPT2_REFERENCE_S)
    slow = budget.plan(SPECS, CONFIGS, 2.0 * slower, Budget(), GPT2_REFERENCE_S)
    assert fast.configs == slow.configs and fast.cuts == slow.cuts
    assert slow.planned_s == pytest.approx(slower * fast.planned_s)


def test_a_check_gives_the_same_verdict_and_plan_when_the_clock_runs_5x_slower(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """End to end: every timed interval 5x longer (a loaded CI runner) under a step budget
    that cuts: the plan and the findings are identical."""
    import nndiag.core.training as training

    def run(scale: float) -> nndiag.Report:
        real = training.time.perf_counter
        start = real()
        monkeypatch.setattr(training.time, "perf_counter", lambda: start + scale * (real() - start))
        try:
            return nndiag.check(str(SAMPLES / "mlp.py"), budget="80steps",
                                probes=["init-loss", "lr-range", "overfit"])  # fmt: skip
        finally:
            monkeypatch.setattr(training.time, "perf_counter", real)

    normal, slow = run(1.0), run(5.0)
    assert normal.settings == slow.settings
    assert [r.cut for r in normal.results] == [r.cut for r in slow.results] != ["", "", ""]
    assert [(f.code, f.severity) for f in normal.findings] == [
        (f.code, f.severity) for f in slow.findings
    ]
    assert not math.isnan(normal.result("lr-range").metrics.get("suggested_lr") or math.nan)
