"""Result objects: what probes return and what renderers and exporters consume.

Plain frozen dataclasses with no torch import, so a saved JSON report can be re-read anywhere.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

from nndiag.findings import Finding, Severity, at_or_above

if TYPE_CHECKING:
    import pandas as pd

Row = dict[str, Any]


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Highlight:
    """A suspicious cell: row index and column of a table, coloured by severity when rendered."""

    row: int
    column: str
    severity: Severity


@dataclass(frozen=True)
class Plot:
    """How to draw a table as a curve: y against x, optional log axes and marked x positions."""

    x: str
    y: str
    log_x: bool = False
    log_y: bool = False
    marks: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Table:
    name: str
    rows: tuple[Row, ...]
    highlights: tuple[Highlight, ...] = ()
    display: tuple[str, ...] = ()  # columns shown in the terminal; exports keep every column
    plot: Plot | None = None  # drawn as a curve in the terminal (rows go to the exports only)

    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)

    @property
    def display_columns(self) -> list[str]:
        return [c for c in self.display if c in self.columns] if self.display else self.columns


@dataclass(frozen=True)
class ProbeResult:
    name: str
    status: Status
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    tables: tuple[Table, ...] = ()
    findings: tuple[Finding, ...] = ()
    error: str = ""
    notes: tuple[str, ...] = ()

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(f"probe {self.name!r} has no table {name!r}")


@dataclass(frozen=True)
class ModelInfo:
    target: str
    model_class: str
    parameters: int
    trainable: int
    device: str
    seed: int
    created: str
    input_shapes: str = ""
    nndiag_version: str = ""
    torch_version: str = ""


@dataclass(frozen=True)
class Report:
    model: ModelInfo
    results: tuple[ProbeResult, ...]
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def findings(self) -> list[Finding]:
        """All findings, worst first, in probe order within one severity."""
        found = [f for r in self.results for f in r.findings]
        return sorted(found, key=lambda f: -f.severity.rank)

    def result(self, name: str) -> ProbeResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no result for probe {name!r}")

    def failing(self, fail_on: Severity | str) -> list[Finding]:
        return at_or_above(self.findings, Severity(fail_on))

    def assert_healthy(self, fail_on: Severity | str = Severity.ERROR) -> None:
        """Raise AssertionError listing the findings at or above `fail_on` (for pytest)."""
        bad = self.failing(fail_on)
        failed = [r for r in self.results if r.status is Status.FAILED]
        if bad or failed:
            lines = [f"{f.severity.value} {f.code.value} [{f.probe}]: {f.message}" for f in bad]
            lines += [f"probe {r.name} failed: {r.error}" for r in failed]
            raise AssertionError(f"{self.model.target} is not healthy:\n  " + "\n  ".join(lines))

    # ---- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1,
            "model": vars(self.model).copy(),
            "seconds": self.seconds,
            "interrupted": self.interrupted,
            "probes": [
                {
                    "name": r.name,
                    "status": r.status.value,
                    "seconds": r.seconds,
                    "error": r.error,
                    "notes": list(r.notes),
                    "metrics": r.metrics,
                    "tables": {
                        t.name: {
                            "rows": list(t.rows),
                            "display": list(t.display),
                            "plot": None
                            if t.plot is None
                            else {**vars(t.plot), "marks": [list(m) for m in t.plot.marks]},
                            "highlights": [
                                {"row": h.row, "column": h.column, "severity": h.severity.value}
                                for h in t.highlights
                            ],
                        }
                        for t in r.tables
                    },
                    "findings": [f.to_dict() for f in r.findings],
                }
                for r in self.results
            ],
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(_json_safe(self.to_dict()), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        results = tuple(
            ProbeResult(
                name=p["name"],
                status=Status(p["status"]),
                seconds=p.get("seconds", 0.0),
                metrics=dict(p.get("metrics", {})),
                tables=tuple(
                    Table(
                        name=name,
                        rows=tuple(t["rows"]),
                        display=tuple(t.get("display", ())),
                        plot=_plot_from_dict(t.get("plot")),
                        highlights=tuple(
                            Highlight(h["row"], h["column"], Severity(h["severity"]))
                            for h in t.get("highlights", [])
                        ),
                    )
                    for name, t in p.get("tables", {}).items()
                ),
                findings=tuple(Finding.from_dict(f) for f in p.get("findings", [])),
                error=p.get("error", ""),
                notes=tuple(p.get("notes", ())),
            )
            for p in data["probes"]
        )
        return cls(
            model=ModelInfo(**data["model"]),
            results=results,
            seconds=data.get("seconds", 0.0),
            interrupted=data.get("interrupted", False),
        )

    def to_frames(self) -> dict[str, pd.DataFrame]:
        """One DataFrame per probe table, keyed `probe-table`, plus `findings`."""
        import pandas as pd

        frames = {
            f"{r.name}-{t.name}": pd.DataFrame(list(t.rows), columns=t.columns)
            for r in self.results
            for t in r.tables
        }
        frames["findings"] = pd.DataFrame(
            [
                {
                    **f.to_dict(),
                    "where": "; ".join(f.where),
                    "evidence": json.dumps(_json_safe(f.evidence), allow_nan=False),
                }
                for f in self.findings
            ],
            columns=["code", "severity", "probe", "message", "where", "evidence", "hint"],
        )
        return frames


def _plot_from_dict(data: dict[str, Any] | None) -> Plot | None:
    if data is None:
        return None
    marks = tuple((str(label), float(x)) for label, x in data.get("marks", ()))
    return Plot(**{**data, "marks": marks})


def _json_safe(value: Any) -> Any:
    """JSON has no NaN/Infinity: keep them readable as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value
