"""What a check will cost, known in advance and bounded.

One measured training step prices every probe (each spec's `cost` is in training-step
equivalents). When the estimate exceeds the budget, probes that can (`shrink`) run a cheaper
configuration, and the report says what was cut and how that weakens the verdict.

The default budget is max(DEFAULT_FLOOR_S, DEFAULT_STEPS x one training step): small models
run every probe in full (they finish in seconds anyway), large ones get about DEFAULT_STEPS
steps' worth of work, which holds every probe at its minimum (about 50 steps: 20 range steps, 15
overfit steps, the timing steps and the init probes): a GPT-2 small on a 2-core CPU (a step of
~10 s, batch 8 of 128 tokens) about 10 minutes, a ResNet-50 at 128x128 (a step of ~1 s, batch 8)
2 (benchmarks/real_size/run.py measures both).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nndiag.probes.base import ProbeSpec
from nndiag.report import duration_text

DEFAULT_FLOOR_S = 120.0
DEFAULT_STEPS = 55.0
TIMING_STEPS = 3.0  # the training steps that price the plan (nndiag.core.training.after_steps)
WORTH_SAYING_S = 20.0  # shorter estimates are not announced (nor noted) unless something is cut
MIN_FACTOR = 0.05  # below this a probe would say nothing: it runs at its minimum instead
BISECTIONS = 12  # the factor to within 2.4e-4 of the largest that fits


@dataclass(frozen=True)
class Plan:
    configs: dict[str, Any]
    cuts: dict[str, str]  # probe -> what was cut
    estimate_s: float  # before cuts
    planned_s: float  # after cuts
    budget_s: float  # inf: unlimited
    step_s: float


def default_budget(step_s: float) -> float:
    return max(DEFAULT_FLOOR_S, DEFAULT_STEPS * step_s)


def plan(
    specs: list[ProbeSpec[Any, Any]],
    configs: Mapping[str, Any],
    step_s: float,
    budget_s: float | None,
) -> Plan:
    """Scale the shrinkable probes by the largest common factor whose plan fits the budget.

    The factor is found by bisection, not read off the costs: a shrink is not proportional (a
    probe drops a whole stage below some factor), so the first guess can leave much of the
    budget unused."""
    limit = default_budget(step_s) if budget_s is None else (budget_s or float("inf"))

    def seconds(chosen: Mapping[str, Any]) -> float:
        return sum(s.cost(chosen[s.name]) * step_s for s in specs) + TIMING_STEPS * step_s

    estimate = seconds(configs)
    flexible = [s for s in specs if s.shrink is not None]
    if estimate <= limit or not flexible:
        return Plan(dict(configs), {}, estimate, estimate, limit, step_s)

    def shrunk(factor: float) -> tuple[dict[str, Any], dict[str, str]]:
        planned, cuts = dict(configs), {}
        for s in flexible:
            assert s.shrink is not None
            planned[s.name], cuts[s.name] = s.shrink(configs[s.name], factor)
        return planned, cuts

    low, high = MIN_FACTOR, 1.0
    for _ in range(BISECTIONS):
        middle = (low + high) / 2
        low, high = (middle, high) if seconds(shrunk(middle)[0]) <= limit else (low, middle)
    planned, cuts = shrunk(low)
    return Plan(planned, cuts, estimate, seconds(planned), limit, step_s)


def describe(p: Plan) -> str:
    budget = "no budget" if p.budget_s == float("inf") else f"budget {duration_text(p.budget_s)}"
    text = f"estimated {duration_text(p.estimate_s)} from one training step of {p.step_s * 1e3:.3g} ms; {budget}"
    if p.cuts:
        text += f"; cut to about {duration_text(p.planned_s)}"
    return text
