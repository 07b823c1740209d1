"""Rich rendering of a Report: verdict first, one screen by default, tables on demand.

    line 1     the verdict, the model's size and the time taken
    Findings   grouped by root cause (consequences indented under their cause)
    Probes     one line per probe with its key numbers (and a sparkline where it has a curve)
    Notes      about the whole check (budget, threads, deprecations)

`--details` adds every probe's tables (repeated blocks collapsed, the rows that matter first),
`--details PROBE` one probe's. Output is deterministic for a fixed Console width with colour off
(tests use golden files).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from rich.console import Console, Group, RenderableType
from rich.table import Table as RichTable
from rich.text import Text

from nndiag.condense import cell_text, view
from nndiag.findings import Finding, Severity
from nndiag.plot import lines, sparkline, text_chart
from nndiag.report import ProbeResult, Report, Status, Table

MAX_ROWS = 25  # rows per table in --details; --csv / --json keep every row
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
STATUS_STYLE = {
    Status.OK: "green",
    Status.FAILED: "bold red",
    Status.SKIPPED: "dim",
    Status.INTERRUPTED: "bold red",
}
ALL = "all"


def verdict(report: Report, strict: bool = False) -> tuple[str, str]:
    """The first line of every report, and its style."""
    text = report.verdict(strict)
    if report.interrupted or report.fails(Severity.ERROR, strict):
        return text, "bold red"
    return text, "yellow" if report.fails(Severity.WARNING, strict) else "bold green"


def _finding_row(f: Finding, indent: bool) -> tuple[Text, Text]:
    where = (
        f" in {', '.join(f.where[:4])}" + (" ..." if len(f.where) > 4 else "") if f.where else ""
    )
    body = Text.assemble((f.code, "bold"), f" [{f.probe}] {f.message}{where}")
    if f.caused_by is not None:
        body.append(f" (a consequence of {f.caused_by.code})", style="dim")
    elif f.hint:
        body.append(f"\nhint: {f.hint}", style="dim")
    label = ("  ↳ " if indent else "") + f.severity.value.upper()
    return Text(label, style=SEVERITY_STYLE[f.severity.value]), body


def findings_view(report: Report) -> RenderableType:
    findings = report.findings
    unfinished = [
        Text.assemble(
            ("FAILED ", SEVERITY_STYLE["error"]), f"probe {r.name} ({r.status.value}): {r.error}"
        )
        for r in report.unfinished
    ]
    if not findings:
        if unfinished:
            return Group(Text("No findings, but some checks did not run:"), *unfinished)
        return Text("No findings: the model looks healthy on every probe that ran.", style="green")
    grid = RichTable.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column()
    roots = [f for f in findings if f.caused_by is None]
    shown: set[int] = set()
    for root in roots:
        grid.add_row(*_finding_row(root, indent=False))
        for f in findings:
            if f.caused_by is not None and f.caused_by.code == root.code and id(f) not in shown:
                shown.add(id(f))
                grid.add_row(*_finding_row(f, indent=True))
    for f in findings:  # consequences whose cause was filtered out of this report
        if f.caused_by is not None and id(f) not in shown:
            grid.add_row(*_finding_row(f, indent=True))
    return Group(Text(f"Findings ({len(findings)})", style="bold"), *unfinished, grid)


def _spark(result: ProbeResult) -> str:
    """The first plotted table's first series as a sparkline, its last mark drawn as ┃."""
    table = next((t for t in result.tables if t.plot is not None), None)
    if table is None or table.plot is None:
        return ""
    plot = table.plot
    first = next(iter(lines(table, plot).values()), [])  # the diverging tail trimmed
    xs, ys = [x for x, _ in first], [y for _, y in first]
    if plot.trim_tail and ys:  # the turn kept by trimming, capped: 24 cells show the descent
        ys = [min(y, ys[0] * 1.05) for y in ys]
    mark = _nearest(xs, plot.marks[-1][1], plot.log_x) if plot.marks and xs else None
    line = sparkline(ys, log=plot.log_y, mark=mark)
    return f"  {line}" if line else ""


def _nearest(xs: list[float], target: float, log: bool) -> int:
    """The index of the x closest to `target` (in decades on a log axis)."""
    scale = (lambda v: math.log10(max(v, 1e-300))) if log else (lambda v: v)
    return min(range(len(xs)), key=lambda i: abs(scale(xs[i]) - scale(target)))


def probes_view(report: Report) -> RenderableType:
    grid = RichTable.grid(padding=(0, 2))
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(no_wrap=True, justify="right")
    grid.add_column()
    for r in report.results:
        status = Text(
            f"{r.seconds:.1f} s" if r.status is Status.OK else r.status.value,
            style=STATUS_STYLE[r.status],
        )
        line = Text(r.headline or r.error or "")
        spark = _spark(r) if r.status is Status.OK else ""
        if spark:
            line.append(spark, style="cyan")
        if r.cut:
            line.append(f" (budget: {r.cut})", style="dim")
        grid.add_row(r.name, status, line)
    return Group(Text("Probes", style="bold"), grid)


def table_view(probe: str, table: Table) -> RenderableType:
    title = f"{probe} · {table.name}"
    if table.plot is not None:
        return Group(Text(title, style="italic"), Text(text_chart(table, table.plot)))
    shown = view(table, MAX_ROWS)
    columns = table.display_columns
    grid = RichTable(title=title, title_justify="left", show_edge=False)
    for column in columns:
        numeric = any(isinstance(r.get(column), (int, float)) for r in table.rows)
        grid.add_column(column, justify="right" if numeric else "left", overflow="fold")
    for i, row in enumerate(shown.rows):
        cells = []
        for column in columns:
            level = shown.styles.get((i, column))
            value = row.get(column)
            text = (
                "nan"
                if level and isinstance(value, float) and math.isnan(value)
                else cell_text(value)
            )
            cells.append(Text(text, style=SEVERITY_STYLE[level] if level else ""))
        grid.add_row(*cells)
    if not shown.rows:
        return Group(Text(title, style="italic"), Text("(no rows)", style="dim"))
    if shown.hidden:
        return Group(grid, Text(f"... {shown.hidden} more rows in --csv / --json", style="dim"))
    return grid


def details_view(results: Iterable[ProbeResult]) -> RenderableType:
    parts: list[RenderableType] = []
    for r in results:
        parts.append(Text(""))
        parts.append(
            Text.assemble(
                (r.name, "bold"),
                "  ",
                (r.status.value, STATUS_STYLE[r.status]),
                f"  {r.seconds:.2f} s",
            )
        )
        if r.metrics:
            metrics = "  ".join(
                f"{k}={cell_text(v)}"
                for k, v in r.metrics.items()
                if not isinstance(v, (list, dict))
            )
            parts.append(Text(metrics, style="dim"))
        parts.extend(table_view(r.name, t) for t in r.tables)
        parts.extend(Text(note, style="italic") for note in r.notes)
    return Group(*parts)


def report_view(
    report: Report, *, quiet: bool = False, details: str | None = None, strict: bool = False
) -> RenderableType:
    """The verdict, the findings and one line per probe; with `details` ('all' or a probe
    name) their tables too; with quiet, only the verdict and the findings."""
    text, style = verdict(report, strict)
    parts: list[RenderableType] = [Text(text, style=style)]
    m = report.model
    if not quiet:
        batch = f" · batch {m.batch_size} ({m.batch_origin})" if m.batch_size else ""
        parts.append(Text(m.target, style="dim"))
        parts.append(Text(f"{m.input_shapes}{batch} · {m.device} · seed {m.seed}", style="dim"))
    parts += [Text(""), findings_view(report)]
    if quiet:
        return Group(*parts)
    parts += [Text(""), probes_view(report)]
    if report.notes:
        parts.append(Text(""))
        parts += [Text(f"note: {note}", style="dim") for note in report.notes]
    if details:
        chosen = [r for r in report.results if details == ALL or r.name == details]
        parts.append(details_view(chosen))
    else:
        parts.append(Text("Tables: --details [PROBE]; exports: --json, --csv, --html", style="dim"))
    return Group(*parts)


def render_report(
    report: Report,
    console: Console,
    *,
    quiet: bool = False,
    details: str | None = None,
    strict: bool = False,
) -> None:
    console.print(report_view(report, quiet=quiet, details=details, strict=strict))
