"""Curves for tables that carry a Plot: a terminal chart and a sparkline for Rich, an inline SVG
for the HTML page, PNG files via matplotlib (optional)."""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

from nndiag.report import Plot, Report, Table

WIDTH, HEIGHT = 60, 10  # terminal chart cells
SPARKS = "▁▂▃▄▅▆▇█"


def finite_points(table: Table, plot: Plot) -> list[tuple[float, float]]:
    """(x, y) pairs that are finite, and positive on a log axis."""
    points = []
    for row in table.rows:
        x, y = row.get(plot.x), row.get(plot.y)
        if not (isinstance(x, (int, float)) and isinstance(y, (int, float))):
            continue
        if (
            math.isfinite(x)
            and math.isfinite(y)
            and (x > 0 or not plot.log_x)
            and (y > 0 or not plot.log_y)
        ):
            points.append((float(x), float(y)))
    return points


def _axes(table: Table, plot: Plot) -> list[tuple[float, float]]:
    return [
        (math.log10(x) if plot.log_x else x, math.log10(y) if plot.log_y else y)
        for x, y in finite_points(table, plot)
    ]


def _label(value: float, log: bool) -> str:
    return f"{10**value:.3g}" if log else f"{value:.3g}"


def text_chart(table: Table, plot: Plot, width: int = WIDTH, height: int = HEIGHT) -> str:
    """A dot chart of y against x, with marked x positions as `|` columns."""
    points = _axes(table, plot)
    if len(points) < 2:
        return "(not enough finite points to plot)"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    xspan, yspan = (x1 - x0) or 1.0, (y1 - y0) or 1.0
    grid = [[" "] * width for _ in range(height)]
    for _label_text, mark in plot.marks:
        mx = math.log10(mark) if plot.log_x and mark > 0 else mark
        if x0 <= mx <= x1:
            col = round((mx - x0) / xspan * (width - 1))
            for row in grid:
                row[col] = "|"
    for x, y in points:
        col = round((x - x0) / xspan * (width - 1))
        line = height - 1 - round((y - y0) / yspan * (height - 1))
        grid[line][col] = "•"
    top, bottom = _label(y1, plot.log_y), _label(y0, plot.log_y)
    margin = max(len(top), len(bottom))
    lines = [
        f"{(top if i == 0 else bottom if i == height - 1 else ''):>{margin}} ┤{''.join(row)}"
        for i, row in enumerate(grid)
    ]
    left, right = _label(x0, plot.log_x), _label(x1, plot.log_x)
    axis = f"{'':>{margin}} └{'─' * width}"
    scale = f"{'':>{margin}}  {left}{right:>{width - len(left)}}"
    legend = (
        f"{plot.y} vs {plot.x}"
        + (" (log y)" if plot.log_y else "")
        + (" (log x)" if plot.log_x else "")
    )
    marks = "  ".join(f"|{label}={value:.3g}" for label, value in plot.marks)
    return "\n".join([*lines, axis, scale, f"{'':>{margin}}  {legend}  {marks}".rstrip()])


def sparkline(
    values: list[float], width: int = 24, log: bool = False, mark: int | None = None
) -> str:
    """`values` resampled to `width` cells of ▁..█ (min to max); `mark` (an index into values)
    is drawn as ┃."""
    points = [
        (i, math.log10(v) if log else v)
        for i, v in enumerate(values)
        if math.isfinite(v) and (v > 0 or not log)
    ]
    if len(points) < 2:
        return ""
    width = min(width, len(points))
    low, high = min(p[1] for p in points), max(p[1] for p in points)
    span = (high - low) or 1.0
    cells = []
    for c in range(width):
        chunk = points[c * len(points) // width : (c + 1) * len(points) // width] or [points[-1]]
        value = sum(p[1] for p in chunk) / len(chunk)
        cells.append(SPARKS[min(len(SPARKS) - 1, int((value - low) / span * len(SPARKS)))])
    if mark is not None:
        positions = [p[0] for p in points]
        nearest = min(range(len(positions)), key=lambda k: abs(positions[k] - mark))
        cells[min(width - 1, nearest * width // len(points))] = "┃"
    return "".join(cells)


def svg_chart(table: Table, plot: Plot, title: str, width: int = 480, height: int = 220) -> str:
    """A self-contained SVG line chart (no scripts, no external files) for the HTML report."""
    points = _axes(table, plot)
    if len(points) < 2:
        return f"<p>{escape(title)}: not enough finite points to plot</p>"
    pad = 40
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    sx = lambda x: pad + (x - x0) / ((x1 - x0) or 1) * (width - 2 * pad)  # noqa: E731
    sy = lambda y: height - pad - (y - y0) / ((y1 - y0) or 1) * (height - 2 * pad)  # noqa: E731
    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="{pad}" y="16" font-size="13">{escape(title)}</text>',
        f'<polyline fill="none" stroke="#1f6feb" stroke-width="1.5" points="{line}"/>',
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
        f'<text x="{pad}" y="{height - pad + 14}" font-size="10">{_label(x0, plot.log_x)}</text>',
        f'<text x="{width - pad}" y="{height - pad + 14}" font-size="10" text-anchor="end">'
        f"{_label(x1, plot.log_x)}</text>",
        f'<text x="{pad - 4}" y="{pad}" font-size="10" text-anchor="end">{_label(y1, plot.log_y)}</text>',
        f'<text x="{pad - 4}" y="{height - pad}" font-size="10" text-anchor="end">{_label(y0, plot.log_y)}</text>',
        f'<text x="{width / 2}" y="{height - 6}" font-size="10" text-anchor="middle">'
        f"{escape(plot.x)}{' (log)' if plot.log_x else ''}</text>",
    ]
    for label, value in plot.marks:
        mx = math.log10(value) if plot.log_x and value > 0 else value
        if x0 <= mx <= x1:
            parts.append(
                f'<line x1="{sx(mx):.1f}" y1="{pad}" x2="{sx(mx):.1f}" y2="{height - pad}" '
                'stroke="#d29922" stroke-dasharray="4 3"/>'
            )
            parts.append(
                f'<text x="{sx(mx) + 3:.1f}" y="{pad + 10}" font-size="10">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


def figure(probe: str, table: Table) -> Any:
    """A matplotlib Figure of a plotted table (not a pyplot one: it works under any backend,
    inline in a notebook, and saves without a display). Needs matplotlib (optional)."""
    from matplotlib.figure import Figure

    plot = table.plot
    if plot is None:
        raise ValueError(f"{probe}'s table {table.name!r} has no plot")
    points = finite_points(table, plot)
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", linewidth=1)
    for label, value in plot.marks:
        ax.axvline(value, linestyle="--", linewidth=1, color="grey")
        ax.annotate(label, (value, 1), xycoords=("data", "axes fraction"), rotation=90,
                    va="top", ha="right", fontsize=8)  # fmt: skip
    ax.set_xscale("log" if plot.log_x else "linear")
    ax.set_yscale("log" if plot.log_y else "linear")
    ax.set_xlabel(plot.x)
    ax.set_ylabel(plot.y)
    ax.set_title(f"{probe}: {table.name}")
    fig.tight_layout()
    return fig


def write_pngs(report: Report, directory: Path) -> list[Path]:
    """One PNG per plotted table; needs matplotlib (an optional dependency)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for result in report.results:
        for table in result.tables:
            if table.plot is None:
                continue
            path = directory / f"{result.name}-{table.name}.png"
            figure(result.name, table).savefig(path, dpi=100)
            written.append(path)
    return written
