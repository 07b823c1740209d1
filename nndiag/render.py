"""Rich rendering of a Report: results describe themselves, the console draws them.

Output is deterministic for a fixed Console width with colour off (tests use golden files).
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table as RichTable
from rich.text import Text

from nndiag.findings import Severity
from nndiag.plot import text_chart
from nndiag.report import ProbeResult, Report, Status, Table

MAX_ROWS = 40  # longer tables are cut in the terminal; --csv / --json keep every row
SEVERITY_STYLE = {Severity.ERROR: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
STATUS_STYLE = {Status.OK: "green", Status.FAILED: "bold red", Status.SKIPPED: "dim"}


def format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "-" if value is None else str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.2e}"
    return str(value)


def header(report: Report) -> Panel:
    m = report.model
    grid = RichTable.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in [
        ("target", m.target),
        ("model", m.model_class),
        ("parameters", f"{m.parameters:,} total, {m.trainable:,} trainable"),
        ("batch", m.input_shapes),
        ("device", m.device),
        ("seed", str(m.seed)),
        ("time", f"{m.created}  (probes took {report.seconds:.2f} s)"),
    ]:
        grid.add_row(key, value)
    return Panel(grid, title=f"nndiag {m.nndiag_version}", title_align="left")


MIN_COLUMN_WIDTH = 16  # cells fold only past this width; headers fold first
TRANSPOSE_MIN_COLUMNS = 6  # a one-row table this wide reads better as field / value pairs


def table_view(probe: str, table: Table) -> RenderableType:
    title = f"{probe} · {table.name}"
    if table.plot is not None:
        return Group(Text(title, style="italic"), Text(text_chart(table, table.plot)))
    columns = table.display_columns
    if len(table.rows) == 1 and len(columns) >= TRANSPOSE_MIN_COLUMNS:
        return _record_view(title, table)
    view = RichTable(title=title, title_justify="left", show_edge=False)
    for column in columns:
        numeric = any(isinstance(r.get(column), (int, float)) for r in table.rows)
        widest = max(len(format_value(r.get(column, ""))) for r in table.rows[:MAX_ROWS])
        view.add_column(
            column,
            justify="right" if numeric else "left",
            overflow="fold",
            min_width=min(widest, MIN_COLUMN_WIDTH),
        )
    styles = {(h.row, h.column): SEVERITY_STYLE[h.severity] for h in table.highlights}
    for i, row in enumerate(table.rows[:MAX_ROWS]):
        view.add_row(
            *[Text(format_value(row.get(c, "")), style=styles.get((i, c), "")) for c in columns]
        )
    if len(table.rows) > MAX_ROWS:
        return Group(view, Text(f"... {len(table.rows) - MAX_ROWS} more rows in --csv / --json"))
    return view


def _record_view(title: str, table: Table) -> RichTable:
    view = RichTable(title=title, title_justify="left", show_edge=False)
    view.add_column("field")
    view.add_column("value", justify="right")
    styles = {h.column: SEVERITY_STYLE[h.severity] for h in table.highlights}
    for key, value in table.rows[0].items():
        view.add_row(key, Text(format_value(value), style=styles.get(key, "")))
    return view


def probe_section(result: ProbeResult) -> RenderableType:
    title = Text.assemble(
        (result.name, "bold"),
        "  ",
        (result.status.value, STATUS_STYLE[result.status]),
        f"  {result.seconds:.2f} s",
    )
    parts: list[RenderableType] = []
    if result.error:
        parts.append(Text(result.error, style="red"))
    if result.metrics:
        parts.append(
            Text(
                "  ".join(f"{k}={format_value(v)}" for k, v in result.metrics.items()), style="dim"
            )
        )
    parts.extend(table_view(result.name, t) for t in result.tables)
    parts.extend(Text(note, style="italic") for note in result.notes)
    return Group(Text(""), title, *parts)


def findings_view(report: Report) -> RenderableType:
    findings = report.findings
    failed = [r for r in report.results if r.status is Status.FAILED]
    # A probe that could not finish ran no check: never call the model healthy then.
    unfinished = [
        Text.assemble(("FAILED ", SEVERITY_STYLE[Severity.ERROR]), f" probe {r.name}: {r.error}")
        for r in failed
    ]
    if not findings:
        if failed:
            return Group(
                Text(f"No findings, but {len(failed)} probe(s) could not finish:"), *unfinished
            )
        return Text("No findings: the model looks healthy on every probe that ran.", style="green")
    # A grid, so that a long message or hint wraps under itself, not under the severity.
    grid = RichTable.grid(padding=(0, 1))
    grid.add_column(min_width=len("WARNING"), no_wrap=True)
    grid.add_column()
    for f in findings:
        where = (
            f" in {', '.join(f.where[:5])}" + (" ..." if len(f.where) > 5 else "")
            if f.where
            else ""
        )
        body = Text.assemble((f.code.value, "bold"), f" [{f.probe}] {f.message}{where}")
        if f.hint:
            body.append(f"\nhint: {f.hint}", style="dim")
        grid.add_row(Text(f.severity.value.upper(), style=SEVERITY_STYLE[f.severity]), body)
    return Group(Text(f"Findings ({len(findings)})", style="bold"), *unfinished, grid)


def render_report(report: Report, console: Console, *, quiet: bool = False) -> None:
    """The full report, or with quiet=True only the findings."""
    if not quiet:
        console.print(header(report))
        for result in report.results:
            console.print(probe_section(result))
        console.print()
    if report.interrupted:
        console.print(Text("Interrupted: the report is partial.", style="bold red"))
    console.print(findings_view(report))
