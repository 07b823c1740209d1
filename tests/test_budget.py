"""The budget plan: priced from one training step, cut to fit, and honest when it cannot fit."""

from __future__ import annotations

import pytest

from nndiag import budget
from nndiag.probes import registry

SPECS = registry()
CONFIGS = {s.name: s.config() for s in SPECS}


def test_no_cut_without_a_limit_or_when_it_fits() -> None:
    unlimited = budget.plan(SPECS, CONFIGS, step_s=10.0, budget_s=0)
    assert unlimited.cuts == {} and unlimited.planned_s == unlimited.estimate_s
    roomy = budget.plan(SPECS, CONFIGS, step_s=1e-3, budget_s=None)
    assert roomy.cuts == {} and roomy.budget_s == budget.DEFAULT_FLOOR_S


@pytest.mark.parametrize("step_s", [0.2, 0.5, 1.0])
def test_a_cut_plan_fits_and_uses_most_of_the_budget(step_s: float) -> None:
    limit = 120.0
    p = budget.plan(SPECS, CONFIGS, step_s=step_s, budget_s=limit)
    assert p.estimate_s > limit and p.cuts
    assert p.planned_s <= limit
    assert p.planned_s >= 0.7 * limit  # the factor is the largest that fits, not a first guess
    for name, config in p.configs.items():  # every cut config is a valid, cheaper one
        spec = next(s for s in SPECS if s.name == name)
        assert spec.cost(config) <= spec.cost(CONFIGS[name])


def test_a_budget_below_every_probe_s_minimum_says_so() -> None:
    p = budget.plan(SPECS, CONFIGS, step_s=10.0, budget_s=60.0)
    assert p.cuts and p.planned_s > p.budget_s  # the minimum plan, reported as it is
    assert "cut to about" in budget.describe(p)


def test_the_default_budget_holds_the_minimum_plan_of_a_large_model() -> None:
    """GPT-2 small on 2 CPU cores: a training step of about 10 s. The default budget is what
    the check plans within, so it must hold the cheapest plan."""
    p = budget.plan(SPECS, CONFIGS, step_s=10.4, budget_s=None)
    assert p.planned_s <= p.budget_s <= 12 * 60
