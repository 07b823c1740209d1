"""What a check will cost, known in advance and bounded, in the model's own training steps.

Every probe's `cost` is in training-step equivalents, so a plan is a number of steps. When it
exceeds the budget, probes that can (`shrink`) run a cheaper configuration, and the report says
what was cut and how that weakens the verdict.

The budget is steps by default, so the same commit gets the same plan, and the same verdict, on
a fast machine and on a loaded CI runner. The default is

    max(DEFAULT_STEPS, DEFAULT_FLOOR_S / reference step time)

where the reference step time is the step's floating-point work (counted by
torch.utils.flop_counter, the same on every machine) at REFERENCE_FLOPS: small models run every
probe in full (a floor of 95 seconds' worth of steps at the reference speed is thousands of
steps for them), large ones get about DEFAULT_STEPS steps, which holds every probe at its minimum
(about 62 steps: 20 range steps, 15 overfit steps, the timing steps and the init probes, whose
costs were measured at real size) with room for more.

`--budget 200steps` sets the steps; `--budget 90s` sets seconds instead, priced from one measured
step (that plan follows the machine's speed, as asked); `--budget 0` means no limit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nndiag.errors import OptionError
from nndiag.probes.base import ProbeSpec
from nndiag.report import duration_text

DEFAULT_FLOOR_S = 95.0
# Every probe at its minimum is about 62 steps (the fixed probes' costs are measured at real
# size); 90 gives the training probes more, and keeps a ResNet-50 or a GPT-2 small within 100
# of their own plain training steps (issue 27), the plan's error included.
DEFAULT_STEPS = 90.0
# Sustained FLOP/s of a training step on a 2-core CPU runner with torch 2.13 (timm's ResNet-50 at
# 128x128, batch 8: 63 GFLOP counted forward and backward, a step in 0.6 s idle and 1.3 s busy:
# 50-100 GFLOP/s). A constant, not a measurement: it turns a model's work into steps the same way
# on every machine (that ResNet-50 gets max(90, 95 s / 1.06 s) = 90 steps by default).
REFERENCE_FLOPS = 60e9
TIMING_STEPS = 3.0  # the training steps that price the plan (nndiag.core.training.after_steps)
WORTH_SAYING_S = 20.0  # shorter estimates are not announced (nor noted) unless something is cut
MIN_FACTOR = 0.05  # below this a probe would say nothing: it runs at its minimum instead
BISECTIONS = 12  # the factor to within 2.4e-4 of the largest that fits


@dataclass(frozen=True)
class Budget:
    """A limit in seconds or in training steps; neither: the default; 0: no limit."""

    seconds: float | None = None
    steps: float | None = None

    @property
    def unlimited(self) -> bool:
        return self.seconds == 0 or self.steps == 0

    def __str__(self) -> str:
        if self.unlimited:
            return "no budget"
        if self.steps is not None:
            return f"budget {self.steps:g} steps"
        if self.seconds is not None:
            return f"budget {duration_text(self.seconds)}"
        return "default budget"


def parse(value: object) -> Budget:
    """'90s', '90', 90 -> 90 seconds; '200steps' -> 200 steps; None -> the default; 0: none."""
    if value is None or isinstance(value, Budget):
        return value or Budget()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number, unit = float(value), "s"
    else:
        match = re.fullmatch(r"\s*([0-9.eE+]+)\s*(s|sec|steps?|)\s*", str(value))
        if match is None:
            raise OptionError(f"invalid budget {value!r}: seconds (90s) or steps (200steps)")
        try:
            number = float(match.group(1))
        except ValueError:
            raise OptionError(
                f"invalid budget {value!r}: seconds (90s) or steps (200steps)"
            ) from None
        unit = match.group(2) or "s"
    if not (math.isfinite(number) and number >= 0):
        raise OptionError(f"invalid budget {value!r}: a number >= 0 (0: no limit)")
    return Budget(steps=number) if unit.startswith("step") else Budget(seconds=number)


@dataclass(frozen=True)
class Plan:
    configs: dict[str, Any]
    cuts: dict[str, str]  # probe -> what was cut
    estimate_steps: float  # before cuts
    planned_steps: float  # after cuts
    budget_steps: float  # inf: unlimited
    step_s: float  # one measured training step: what turns steps into an ETA
    budget: Budget

    @property
    def estimate_s(self) -> float:
        return self.estimate_steps * self.step_s

    @property
    def planned_s(self) -> float:
        return self.planned_steps * self.step_s


def default_steps(reference_step_s: float) -> float:
    """The default budget in steps for a step of `reference_step_s` at REFERENCE_FLOPS."""
    if reference_step_s <= 0:
        return math.inf
    return max(DEFAULT_STEPS, DEFAULT_FLOOR_S / reference_step_s)


def reference_step_s(step_flops: float) -> float:
    return step_flops / REFERENCE_FLOPS


def limit_steps(limit: Budget, step_s: float, reference_s: float) -> float:
    if limit.unlimited:
        return math.inf
    if limit.steps is not None:
        return limit.steps
    if limit.seconds is not None:  # the user asked for wall time: it follows the machine
        return limit.seconds / step_s if step_s > 0 else math.inf
    return default_steps(reference_s)


def plan(
    specs: list[ProbeSpec[Any, Any]],
    configs: Mapping[str, Any],
    step_s: float,
    limit: Budget,
    reference_s: float,
) -> Plan:
    """Scale the shrinkable probes by the largest common factor whose plan fits the budget.

    The factor is found by bisection, not read off the costs: a shrink is not proportional (a
    probe drops a whole stage below some factor), so the first guess can leave much of the
    budget unused."""
    allowed = limit_steps(limit, step_s, reference_s)

    def steps(chosen: Mapping[str, Any]) -> float:
        return sum(s.cost(chosen[s.name]) for s in specs) + TIMING_STEPS

    estimate = steps(configs)
    flexible = [s for s in specs if s.shrink is not None]
    if estimate <= allowed or not flexible:
        return Plan(dict(configs), {}, estimate, estimate, allowed, step_s, limit)

    def shrunk(factor: float) -> tuple[dict[str, Any], dict[str, str]]:
        planned, cuts = dict(configs), {}
        for s in flexible:
            assert s.shrink is not None
            planned[s.name], cuts[s.name] = s.shrink(configs[s.name], factor)
        return planned, cuts

    low, high = MIN_FACTOR, 1.0
    for _ in range(BISECTIONS):
        middle = (low + high) / 2
        low, high = (middle, high) if steps(shrunk(middle)[0]) <= allowed else (low, middle)
    planned, cuts = shrunk(low)
    return Plan(planned, cuts, estimate, steps(planned), allowed, step_s, limit)


def describe(p: Plan) -> str:
    """'estimated 230 steps (1.5 min at 0.39 s a step); budget 187 steps (default); cut to
    about 180 steps (1.2 min)'."""
    if math.isinf(p.budget_steps):
        budget = "no budget"
    else:
        if p.budget.seconds is not None:
            kind = f"{duration_text(p.budget.seconds)} at the measured step"
        else:
            kind = "default, the same on every machine" if p.budget.steps is None else "--budget"
        budget = f"budget {p.budget_steps:.0f} steps ({kind})"
    text = (
        f"estimated {p.estimate_steps:.0f} training steps ({duration_text(p.estimate_s)} at "
        f"{p.step_s * 1e3:.3g} ms a step); {budget}"
    )
    if p.cuts:
        text += f"; cut to about {p.planned_steps:.0f} steps ({duration_text(p.planned_s)})"
    return text
