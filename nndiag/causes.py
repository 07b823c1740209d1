"""One root cause, its consequences under it.

When one finding explains others, the consequence carries `caused_by` (the cause's code and
where): the report shows it under its cause, and it does not count toward --fail-on unless
--strict. The cause takes the severity of its worst consequence (a dead layer that leaves the
output independent of the input is an error, though dead units alone are a warning). RULES is
read in order, most fundamental cause first; a finding already attributed to a cause is not a
cause itself. Documented in docs/findings.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nndiag.findings import Cause, Code, Finding, Severity

TRAINING = frozenset({Code.OVERFIT_FAILED, Code.LR_RANGE_UNSTABLE, Code.UNLEARNABLE_DATA})


def _always(_cause: Finding) -> bool:
    return True


def _an_error(cause: Finding) -> bool:
    """it is an error"""
    return cause.severity is Severity.ERROR


def _not_info(cause: Finding) -> bool:
    """it is a warning or an error"""
    return cause.severity is not Severity.INFO


def _a_whole_layer(cause: Finding) -> bool:
    """some site is dead for every unit: the signal stops there"""
    return bool(cause.evidence.get("whole_layers"))


def _part_of_a_layer(cause: Finding) -> bool:
    """no site is dead for every unit"""
    return not _a_whole_layer(cause)


@dataclass(frozen=True)
class Rule:
    cause: str
    consequences: frozenset[str]
    when: Callable[[Finding], bool] = _always  # a condition on the cause finding
    why: str = ""


RULES: tuple[Rule, ...] = (
    Rule(
        Code.IGNORED_TARGETS,
        frozenset(Code) - {Code.IGNORED_TARGETS, Code.INPUT_SCALE, Code.UNREGISTERED_PARAMETERS},
        why="with every target ignored the loss is NaN (or 0) and nothing gets a gradient",
    ),
    Rule(
        Code.NONFINITE_VALUES,
        frozenset(Code)
        - {
            Code.NONFINITE_VALUES,
            Code.INPUT_SCALE,
            Code.DEGENERATE_TARGETS,
            Code.UNREGISTERED_PARAMETERS,
            Code.FROZEN_PARAMETERS,
        },
        why="NaN/Inf poisons everything measured after it",
    ),
    Rule(
        Code.DEGENERATE_TARGETS,
        TRAINING | {Code.LOSS_AT_INIT},
        why="constant targets teach nothing",
    ),
    Rule(
        Code.INPUT_SCALE,
        frozenset(
            {
                Code.SATURATED_UNITS,
                Code.DEAD_UNITS,
                Code.LOSS_AT_INIT,
                Code.PRECISION_OVERFLOW,
                Code.EXPLODING_GRADIENTS,
            }
        ),
        why="off-scale inputs drive every layer off-scale",
    ),
    Rule(
        Code.UNREGISTERED_PARAMETERS,
        TRAINING | {Code.NONDETERMINISTIC_FORWARD},
        why="layers built in forward draw new weights on every call",
    ),
    Rule(
        Code.NONDETERMINISTIC_FORWARD,
        TRAINING | {Code.CAUSAL_LEAK, Code.BATCH_MIXING, Code.OUTPUT_IGNORES_INPUT},
        why="a forward that changes from call to call makes every comparison of two forwards noise",
    ),
    Rule(Code.FROZEN_PARAMETERS, TRAINING, _an_error, "nothing trains"),
    Rule(
        Code.DEAD_UNITS,
        TRAINING
        | {
            Code.OUTPUT_IGNORES_INPUT,
            Code.NO_GRADIENT,
            Code.VANISHING_GRADIENTS,
            Code.NO_NONLINEARITY,
        },
        _a_whole_layer,
        "a layer dead for every unit passes no signal",
    ),
    Rule(
        Code.EXPLODING_GRADIENTS,
        TRAINING
        | {Code.LOSS_AT_INIT, Code.PRECISION_OVERFLOW, Code.SATURATED_UNITS, Code.INIT_SCALE},
        why="a signal that grows exponentially saturates, overflows and diverges",
    ),
    Rule(
        Code.VANISHING_GRADIENTS,
        TRAINING | {Code.OUTPUT_IGNORES_INPUT, Code.NO_NONLINEARITY},
        why="a signal that vanishes leaves the output independent of the input",
    ),
    Rule(
        Code.SATURATED_UNITS,
        TRAINING | {Code.VANISHING_GRADIENTS},
        why="saturated units pass no gradient",
    ),
    Rule(
        Code.DOUBLE_SOFTMAX,
        TRAINING | {Code.LOSS_AT_INIT, Code.VANISHING_GRADIENTS},
        why="the loss cannot reach zero",
    ),
    Rule(
        Code.LOSS_BROADCAST,
        TRAINING | {Code.LOSS_AT_INIT},
        why="the loss compares the wrong elements",
    ),
    Rule(
        Code.LOSS_AT_INIT,
        TRAINING,
        _not_info,
        why="a loss far above chance spends the first steps shrinking the logits",
    ),
    Rule(
        Code.INIT_SCALE,
        TRAINING | {Code.LOSS_AT_INIT},
        why="a mis-scaled layer mis-scales what follows",
    ),
    Rule(
        Code.OUTPUT_IGNORES_INPUT,
        TRAINING
        | {
            Code.NO_GRADIENT,
            Code.NO_NONLINEARITY,
            Code.BATCH_MIXING,
            Code.CAUSAL_LEAK,
            Code.VANISHING_GRADIENTS,
            Code.DEAD_UNITS,
        },
        why="the input never reaches the output",
    ),
    Rule(Code.DEAD_UNITS, TRAINING, _part_of_a_layer, "dead units slow learning"),
    Rule(Code.NO_GRADIENT, TRAINING, why="parameters without gradient never train"),
)


def link(findings: Iterable[Finding]) -> list[Finding]:
    """The same findings, in order, with `caused_by` set on every consequence; a disease seen
    again by a later probe (the same code, no worse) nests under its first sighting."""
    found = list(findings)
    links = _Links()
    for rule in RULES:
        _apply(rule, found, links)
    _nest_repeats(found, links)
    return [_linked(f, links.cause_of, found) for f in found]


def _apply(rule: Rule, found: list[Finding], links: _Links) -> None:
    """Attribute every free finding of the rule's consequence codes to each of its causes."""
    causes = [c for c in found if c.code == rule.cause and c.severity is not Severity.INFO
              and not links.is_consequence(c) and rule.when(c)]  # fmt: skip
    for cause in causes:
        for f in found:
            if f is not cause and links.free(f) and f.code in rule.consequences:
                links.attribute(f, cause)


def _nest_repeats(found: list[Finding], links: _Links) -> None:
    """A later sighting of a root's code, no worse than it, nests under the first."""
    for i, f in enumerate(found):
        if not links.free(f):
            continue
        first = next(
            (c for c in found[:i] if c.code == f.code and not links.is_consequence(c)), None
        )
        if first is not None and f.severity.rank <= first.severity.rank:
            links.attribute(f, first)


class _Links:
    """Which finding is the consequence of which (by identity: findings compare by value)."""

    def __init__(self) -> None:
        self.cause_of: dict[int, Finding] = {}
        self.causes: set[int] = set()

    def attribute(self, f: Finding, cause: Finding) -> None:
        self.cause_of[id(f)] = cause
        self.causes.add(id(cause))

    def is_consequence(self, f: Finding) -> bool:
        return id(f) in self.cause_of

    def free(self, f: Finding) -> bool:
        """Neither a consequence nor a cause yet."""
        return id(f) not in self.cause_of and id(f) not in self.causes


def _linked(f: Finding, cause_of: dict[int, Finding], found: list[Finding]) -> Finding:
    """A consequence gets its cause; a root takes the severity of its worst consequence, so that
    a warning that makes training fail (a whole dead layer) still fails the gate."""
    if id(f) in cause_of:
        cause = cause_of[id(f)]
        return dataclasses.replace(f, caused_by=Cause(cause.code, cause.where))
    worst = max(
        (c.severity for c in found if cause_of.get(id(c)) is f),
        key=lambda s: s.rank,
        default=f.severity,
    )
    if worst.rank > f.severity.rank:
        return dataclasses.replace(
            f, severity=worst, evidence={**f.evidence, "raised_by_consequences": True}
        )
    return f
