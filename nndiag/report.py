"""Result objects: what probes return and what renderers, exporters and `diff` consume.

Plain frozen dataclasses with no torch import, so a saved JSON report can be re-read anywhere.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Any

from nndiag.findings import Finding, Severity, at_or_above

if TYPE_CHECKING:
    import pandas as pd

Row = dict[str, Any]
SCHEMA = 2


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"  # cut off by Ctrl-C or --timeout: its tables are partial


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
    x_label: str = ""  # axis titles for people ("Learning rate"); the column names by default
    y_label: str = ""
    names: str = ""  # a column naming each x (layer names on a depth plot)
    series: str = ""  # a column splitting the rows into separate lines (repeated range runs)
    trim_tail: bool = False  # drop a diverging tail: after the minimum, from the first point
    # above the curve's start (the range test's blow-up would flatten the useful descent)


@dataclass(frozen=True)
class Table:
    name: str
    rows: tuple[Row, ...]
    highlights: tuple[Highlight, ...] = ()
    display: tuple[str, ...] = ()  # columns shown in the terminal; exports keep every column
    plot: Plot | None = None  # drawn as a curve in the terminal (rows go to the exports only)
    schema: tuple[str, ...] = ()  # the columns when there are no rows to read them from
    key: str = ""  # the column that names a row (a layer, a site): used by `diff` and collapsing
    watch: tuple[str, ...] = ()  # per-row statistics `nndiag diff` compares from report to report

    @property
    def columns(self) -> list[str]:
        seen: dict[str, None] = dict.fromkeys(self.schema)
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
    headline: str = ""  # one line of key numbers for the default report
    cut: str = ""  # what the budget cut, and how that weakens the verdict
    watched: tuple[str, ...] = ()  # metrics `nndiag diff` compares from report to report

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
    batch_size: int = 0
    batch_origin: str = ""  # where the batch size came from
    world_size: int = 1  # ranks under torchrun


@dataclass(frozen=True)
class Report:
    model: ModelInfo
    results: tuple[ProbeResult, ...]
    seconds: float = 0.0
    interrupted: bool = False
    notes: tuple[str, ...] = ()  # about the whole check: budget, threads, copies, deprecations
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # probe -> its config
    timed_out: bool = False
    strict: bool = False  # the check's --strict: consequences count toward the gate by default

    # ---- the verdict and a notebook's display ---------------------------------------------------

    def verdict(self, strict: bool | None = None) -> str:
        """The report's first line: 'nndiag: ready to train · Net, 5.83k parameters · 1.2 s',
        or what is wrong (errors and warnings counted at their roots, unless strict)."""
        counted = self._counted(strict)
        errors = sum(f.severity is Severity.ERROR for f in counted)
        warnings = sum(f.severity is Severity.WARNING for f in counted)
        m = self.model
        about = (
            f"{m.model_class}, {size_text(m.parameters)} parameters · {duration_text(self.seconds)}"
        )
        if self.interrupted:
            return f"nndiag: INTERRUPTED, the report is partial · {about}"
        problems = []
        if errors:
            problems.append(f"{errors} error{'s' * (errors != 1)}")
        if warnings:
            problems.append(f"{warnings} warning{'s' * (warnings != 1)}")
        unfinished = len(self.unfinished)
        if unfinished:
            problems.append(f"{unfinished} probe{'s' * (unfinished != 1)} did not finish")
        if problems:
            return f"nndiag: {', '.join(problems)} · {about}"
        return f"nndiag: ready to train · {about}"

    def __str__(self) -> str:
        return self.verdict()

    def __rich__(self) -> Any:
        from nndiag.render import report_view

        return report_view(self)

    def _repr_html_(self) -> str:
        from nndiag.html import page

        return page(self)

    def show(self, details: str | None = None) -> None:
        """Print the report as the CLI does (details: 'all' or a probe name for its tables)."""
        from rich.console import Console

        from nndiag.render import report_view

        Console().print(report_view(self, details=details))

    @property
    def suggested_lr(self) -> float | None:
        """The LR range test's suggestion (None when it did not run or made none)."""
        try:
            value = self.result("lr-range").metrics.get("suggested_lr")
        except KeyError:
            return None
        return float(value) if isinstance(value, (int, float)) else None

    def plot(self, probe: str, table: str | None = None) -> Any:
        """A matplotlib Figure of a probe's curve (its first plotted table, or `table`)."""
        from nndiag.plot import figure

        result = self.result(probe)
        plotted = [t for t in result.tables if t.plot is not None and table in (None, t.name)]
        if not plotted:
            raise KeyError(
                f"probe {probe!r} has no plotted table" + (f" {table!r}" if table else "")
            )
        return figure(probe, plotted[0])

    @property
    def findings(self) -> list[Finding]:
        """All findings, worst first, in probe order within one severity; root causes before the
        consequences of the same severity."""
        found = [f for r in self.results for f in r.findings]
        return sorted(found, key=lambda f: (-f.severity.rank, f.caused_by is not None))

    def result(self, name: str) -> ProbeResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no result for probe {name!r}")

    def failing(self, fail_on: Severity | str, strict: bool | None = None) -> list[Finding]:
        """The gate: findings at or above `fail_on`; consequences of a root cause only when
        strict (None: as the check was run, `Report.strict`)."""
        return at_or_above(self._counted(strict), Severity(fail_on))

    def fails(self, fail_on: Severity | str, strict: bool | None = None) -> bool:
        """The release gate every consumer applies (exit code, assert_healthy, the callbacks,
        the first line's colour): a finding at or above `fail_on` ('never': none counts), or a
        probe that could not finish (its check did not run)."""
        if str(fail_on) == "never":
            return False
        return bool(self.failing(fail_on, strict) or self.unfinished)

    def _counted(self, strict: bool | None) -> list[Finding]:
        strict = self.strict if strict is None else strict
        return [f for f in self.findings if strict or f.caused_by is None]

    @property
    def unfinished(self) -> list[ProbeResult]:
        return [r for r in self.results if r.status in (Status.FAILED, Status.INTERRUPTED)]

    def consequences(self, root: Finding) -> list[Finding]:
        """The findings `root` explains (their `caused_by` is its code and place)."""
        cause = (root.code, root.where)
        return [
            f for f in self.findings
            if f.caused_by is not None and (f.caused_by.code, f.caused_by.where) == cause
        ]  # fmt: skip

    def findings_text(self, fail_on: Severity | str, strict: bool | None = None) -> str:
        """The findings block the CLI prints, as plain text: each finding at or above `fail_on`
        with where, its hint and the consequences it explains; then the probes that did not
        finish. What assert_healthy, the callbacks' exceptions and JUnit show."""
        lines = []
        for f in self.failing(fail_on, strict):
            where = f" at {', '.join(f.where)}" if f.where else ""
            lines.append(f"{f.severity.value} {f.code} [{f.probe}]{where}: {f.message}")
            if f.hint:
                lines.append(f"    hint: {f.hint}")
            lines += [
                f"    consequence: {c.severity.value} {c.code} [{c.probe}]: {c.message}"
                for c in self.consequences(f)
            ]
        lines += [f"probe {r.name} {r.status.value}: {r.error}" for r in self.unfinished]
        return "\n".join(lines)

    def assert_healthy(
        self, fail_on: Severity | str = Severity.ERROR, strict: bool | None = None
    ) -> None:
        """Raise AssertionError with the findings block at or above `fail_on` (for pytest)."""
        if self.fails(fail_on, strict):
            text = self.findings_text(fail_on, strict)
            raise AssertionError(f"{self.model.target} is not healthy:\n" + text)

    # ---- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "model": vars(self.model).copy(),
            "seconds": self.seconds,
            "interrupted": self.interrupted,
            "timed_out": self.timed_out,
            "strict": self.strict,
            "notes": list(self.notes),
            "settings": self.settings,
            "probes": [_result_dict(r) for r in self.results],
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(json_safe(self.to_dict()), indent=indent, allow_nan=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """A report read back: this schema or an older one (missing keys take defaults); a
        newer one is refused (a key may have changed meaning)."""
        schema = data.get("schema", 1)
        if not isinstance(schema, int) or schema > SCHEMA:
            from nndiag.errors import UsageError

            raise UsageError(
                f"the report has schema {schema!r}, newer than this nndiag reads ({SCHEMA}): "
                "upgrade nndiag to read it"
            )
        known = {f.name for f in fields(ModelInfo)}
        return cls(
            model=ModelInfo(**{k: v for k, v in data["model"].items() if k in known}),
            results=tuple(_result_from_dict(p) for p in data["probes"]),
            seconds=data.get("seconds", 0.0),
            interrupted=data.get("interrupted", False),
            notes=tuple(data.get("notes", ())),
            settings=dict(data.get("settings", {})),
            timed_out=data.get("timed_out", False),
            strict=data.get("strict", False),
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
                    "evidence": json.dumps(json_safe(f.evidence), allow_nan=False),
                    "caused_by": "" if f.caused_by is None else f.caused_by.code,
                }
                for f in self.findings
            ],
            columns=["code", "severity", "probe", "message", "where", "evidence", "hint",
                     "caused_by"],
        )  # fmt: skip
        return frames


def size_text(parameters: int) -> str:
    """12345678 -> '12.3M'."""
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if parameters >= scale:
            return f"{parameters / scale:.3g}{unit}"
    return str(parameters)


def duration_text(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _result_dict(r: ProbeResult) -> dict[str, Any]:
    return {
        "name": r.name,
        "status": r.status.value,
        "seconds": r.seconds,
        "error": r.error,
        "notes": list(r.notes),
        "headline": r.headline,
        "cut": r.cut,
        "metrics": r.metrics,
        "watched": list(r.watched),
        "tables": {
            t.name: {
                "rows": list(t.rows),
                "display": list(t.display),
                "schema": list(t.schema),
                "key": t.key,
                "watch": list(t.watch),
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


def _result_from_dict(p: dict[str, Any]) -> ProbeResult:
    return ProbeResult(
        name=p["name"],
        status=Status(p["status"]),
        seconds=p.get("seconds", 0.0),
        metrics=dict(p.get("metrics", {})),
        tables=tuple(
            Table(
                name=name,
                rows=tuple(json_restore(t["rows"])),
                display=tuple(t.get("display", ())),
                plot=_plot_from_dict(t.get("plot")),
                highlights=tuple(
                    Highlight(h["row"], h["column"], Severity(h["severity"]))
                    for h in t.get("highlights", [])
                ),
                schema=tuple(t.get("schema", ())),
                key=t.get("key", ""),
                watch=tuple(t.get("watch", ())),
            )
            for name, t in p.get("tables", {}).items()
        ),
        findings=tuple(Finding.from_dict(f) for f in p.get("findings", [])),
        error=p.get("error", ""),
        notes=tuple(p.get("notes", ())),
        headline=p.get("headline", ""),
        cut=p.get("cut", ""),
        watched=tuple(p.get("watched", ())),
    )


def _plot_from_dict(data: dict[str, Any] | None) -> Plot | None:
    if data is None:
        return None
    marks = tuple((str(label), float(x)) for label, x in data.get("marks", ()))
    return Plot(**{**data, "marks": marks})


NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def json_safe(value: Any) -> Any:
    """JSON has no NaN/Infinity: keep them readable as the strings "nan", "inf", "-inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Enum):
        return value.value
    return value


def json_restore(rows: list[Row]) -> list[Row]:
    """Table cells written as "nan"/"inf" by json_safe become floats again."""
    return [
        {k: NONFINITE.get(v, v) if isinstance(v, str) else v for k, v in r.items()} for r in rows
    ]
