"""What a probe is: a spec with a frozen Config, a measure step, a pure diagnose step and a
present step. The orchestrator (nndiag.api) runs them; a probe never prints.

    measure(ctx, config)   -> Measurement      numbers and rows, from the model (torch here)
    diagnose(m, config)    -> list[Finding]    pure: numbers in, findings out (unit-tested)
    present(m, config)     -> Presentation     a headline, metrics, tables and notes

Every field of a Config is a documented setting: `setting(default, doc, source=...)`. The docs
pages read their values from the configs (nndiag.docgen), and users override them per probe
(`[tool.nndiag.<probe>]`, or `settings={"<probe>": {...}}` through the API).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from nndiag.findings import CodeInfo, Finding
from nndiag.report import Table

if TYPE_CHECKING:
    from nndiag.core.context import Context

C = TypeVar("C")
M = TypeVar("M")
T = TypeVar("T")


def setting(
    default: T,
    doc: str,
    *,
    source: str = "",
    low: float | None = None,
    high: float | None = None,
) -> T:
    """A Config field: its default, what it means, where the value comes from (a paper, a
    peer's default, or the calibration that chose it), and the range a user may set."""
    metadata = {"doc": doc, "source": source, "low": low, "high": high}
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Presentation:
    headline: str  # one line of key numbers, shown in the default report
    metrics: dict[str, Any] = field(default_factory=dict)
    tables: tuple[Table, ...] = ()
    notes: tuple[str, ...] = ()
    watched: tuple[str, ...] = ()  # metrics worth comparing between two reports (`nndiag diff`)


def _no_requirements(_config: Any) -> tuple[type, ...]:
    return ()


def _one_step(_config: Any) -> float:
    return 1.0


@dataclass(frozen=True)
class ProbeSpec(Generic[C, M]):
    name: str
    summary: str  # what it measures, one line (CLI help, README, docs)
    config: type[C]
    measure: Callable[[Context, C], M]
    diagnose: Callable[[M, C], list[Finding]]
    present: Callable[[M, C], Presentation]
    trains: bool = False  # trains a copy: skipped when every parameter is frozen
    # Calls the model on its inputs (perturbs or differentiates them): skipped when a training
    # step never calls the model itself, only its submodules.
    feeds_inputs: bool = False
    # Under torchrun: True runs on sharded copies and each rank's slice of the batch, making its
    # statistics global with collectives that every rank calls alike; False runs on an unsharded
    # replica of the whole batch on every rank (Context.replica), with no collectives.
    sharded: bool = False
    needs: tuple[type, ...] = ()  # provisions it reads when an earlier probe provided them
    provides: type | None = None  # the provision it hands to later probes
    provide: Callable[[M, C], object | None] | None = None  # builds that provision
    requires: Callable[[C], tuple[type, ...]] = _no_requirements  # providers join the run
    cost: Callable[[C], float] = _one_step  # in training-step equivalents
    shrink: Callable[[C, float], tuple[C, str]] | None = None  # a cheaper config, and the cut
    # The finding codes its diagnose can return: built-in codes, and a plugin's own (`catalog`,
    # the codes it adds). The catalogue's "raised by" is derived from these (probes.raised_by).
    raises: tuple[str, ...] = ()
    catalog: Mapping[str, CodeInfo] = field(default_factory=dict)
    # Short names for settings, as CLI flags and check() keywords: {"steps": "steps"} makes
    # `nndiag check --steps 50` set this probe's `steps` (cli.check gets one flag per alias).
    aliases: Mapping[str, str] = field(default_factory=dict)
    quick: bool = False  # seconds at init, no training: the integrations' default set
    # Where the probe runs and reports, lower first (the built-ins count in tens, so a new one
    # fits between two); a probe that trains runs after those that do not, whatever its order.
    order: int = 100

    @property
    def codes(self) -> tuple[str, ...]:
        """Every code it raises: those it declares, then its own catalogue's."""
        return tuple(dict.fromkeys([*self.raises, *self.catalog]))
