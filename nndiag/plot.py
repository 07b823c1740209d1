"""Curves for tables that carry a Plot: a terminal chart and a sparkline for Rich, an inline SVG
for the HTML page, PNG files via matplotlib (optional)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from nndiag.report import Plot, Report, Table

WIDTH, HEIGHT = 60, 10  # terminal chart cells
SPARKS = "▁▂▃▄▅▆▇█"


def finite_points(table: Table, plot: Plot) -> list[tuple[float, float]]:
    """(x, y) pairs that are finite, and positive on a log axis; a diverging tail trimmed."""
    return [p for line in lines(table, plot).values() for p in line]


def lines(table: Table, plot: Plot) -> dict[str, list[tuple[float, float]]]:
    """The plotted points, one list per series (one list when the plot has no series)."""
    found: dict[str, list[tuple[float, float]]] = {}
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
            key = str(row.get(plot.series, "")) if plot.series else ""
            found.setdefault(key, []).append((float(x), float(y)))
    if plot.trim_tail:
        found = {k: _trimmed(v) for k, v in found.items()}
    return found


def _trimmed(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Up to the first point after the minimum that is above the start: the descent and the
    turn stay, the blow-up goes (pytorch-lr-finder trims its tail too)."""
    if len(points) < 3:
        return points
    lowest = min(range(len(points)), key=lambda i: points[i][1])
    start = points[0][1]
    for i in range(lowest + 1, len(points)):
        if points[i][1] > start:
            return points[: i + 1]
    return points


def _names(table: Table, plot: Plot) -> dict[float, str]:
    if not plot.names:
        return {}
    return {
        float(r[plot.x]): str(r.get(plot.names, ""))
        for r in table.rows
        if isinstance(r.get(plot.x), (int, float))
    }


def _x_title(plot: Plot) -> str:
    return plot.x_label or plot.x


def _y_title(plot: Plot) -> str:
    return plot.y_label or plot.y


def _at(points: list[tuple[float, float]], x: float, log_x: bool) -> float | None:
    """y of the curve at x, interpolated (on log x where the axis is log)."""
    if not points:
        return None
    f = (lambda v: math.log10(v)) if log_x else (lambda v: v)
    ordered = sorted(points)
    for (xa, ya), (xb, yb) in itertools.pairwise(ordered):
        if xa <= x <= xb:
            t = (f(x) - f(xa)) / ((f(xb) - f(xa)) or 1.0)
            return ya + t * (yb - ya)
    return None


def _axes(table: Table, plot: Plot) -> list[tuple[float, float]]:  # log axes applied
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
    grid = _dots(points, plot, (x0, x1, y0, y1), width, height)
    top, bottom = _label(y1, plot.log_y), _label(y0, plot.log_y)
    margin = max(len(top), len(bottom))
    rows = [
        f"{(top if i == 0 else bottom if i == height - 1 else ''):>{margin}} ┤{''.join(row)}"
        for i, row in enumerate(grid)
    ]
    return "\n".join([*rows, *_x_axis(plot, (x0, x1), margin, width)])


def _dots(
    points: list[tuple[float, float]],
    plot: Plot,
    box: tuple[float, float, float, float],
    width: int,
    height: int,
) -> list[list[str]]:
    """The chart's cells: a `•` per point, a `|` column per mark inside the x range."""
    x0, x1, y0, y1 = box
    column = lambda x: round((x - x0) / ((x1 - x0) or 1.0) * (width - 1))  # noqa: E731
    grid = [[" "] * width for _ in range(height)]
    for _label_text, mark in plot.marks:
        mx = math.log10(mark) if plot.log_x and mark > 0 else mark
        if x0 <= mx <= x1:
            for row in grid:
                row[column(mx)] = "|"
    for x, y in points:
        grid[height - 1 - round((y - y0) / ((y1 - y0) or 1.0) * (height - 1))][column(x)] = "•"
    return grid


def _x_axis(plot: Plot, span: tuple[float, float], margin: int, width: int) -> list[str]:
    """The text chart's x axis, its end labels, and the legend with the marks' values."""
    left, right = _label(span[0], plot.log_x), _label(span[1], plot.log_x)
    legend = (
        f"{_y_title(plot)} vs {_x_title(plot)}"
        + (" (log y)" if plot.log_y else "")
        + (" (log x)" if plot.log_x else "")
    )
    marks = "  ".join(f"|{label}={value:.3g}" for label, value in plot.marks)
    return [
        f"{'':>{margin}} └{'─' * width}",
        f"{'':>{margin}}  {left}{right:>{width - len(left)}}",
        f"{'':>{margin}}  {legend}  {marks}".rstrip(),
    ]


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


@dataclass(frozen=True)
class _Frame:
    """The SVG canvas and the data box drawn in it (log axes applied by x() and y())."""

    plot: Plot
    box: tuple[float, float, float, float]  # x0, x1, y0, y1 on the plotted (log) scale
    width: int
    height: int
    pad: int = 44
    top: int = 30

    def x(self, value: float, log_applied: bool = False) -> float:
        v = value if log_applied or not self.plot.log_x else math.log10(value)
        x0, x1 = self.box[0], self.box[1]
        return self.pad + (v - x0) / ((x1 - x0) or 1) * (self.width - 2 * self.pad)

    def y(self, value: float) -> float:
        v = math.log10(value) if self.plot.log_y else value
        y0, y1 = self.box[2], self.box[3]
        return (
            self.height
            - self.pad
            - (v - y0) / ((y1 - y0) or 1) * (self.height - self.pad - self.top)
        )


def svg_chart(table: Table, plot: Plot, title: str, width: int = 480, height: int = 240) -> str:
    """A self-contained SVG line chart (no scripts, no external files) for the HTML report: one
    line per series, axis titles, each mark a dashed line with its label and value, labels
    stacked so that they never overlap."""
    series = lines(table, plot)
    points = _axes(table, plot)
    if len(points) < 2:
        return f"<p>{escape(title)}: not enough finite points to plot</p>"
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    frame = _Frame(plot, (min(xs), max(xs), min(ys), max(ys)), width, height)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="{frame.pad}" y="16" font-size="13">{escape(title)}</text>',
        *_svg_lines(frame, series),
        *_svg_axes(frame, _names(table, plot)),
        *_svg_marks(frame),
        "</svg>",
    ]
    return "\n".join(parts)


def _svg_lines(frame: _Frame, series: dict[str, list[tuple[float, float]]]) -> list[str]:
    colours = ("#1f6feb", "#8250df", "#1a7f37", "#bf3989")
    return [
        f'<polyline fill="none" stroke="{colours[k % len(colours)]}" stroke-width="1.5" '
        f'points="{" ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in line)}"/>'
        for k, line in enumerate(series.values())
    ]


def _svg_axes(frame: _Frame, names: dict[float, str]) -> list[str]:
    """Axes, the ends of each scale (the first and last layer by name where rows are named)
    and the axis titles."""
    plot, (x0, x1, y0, y1) = frame.plot, frame.box
    pad, top, width, height = frame.pad, frame.top, frame.width, frame.height
    left = names.get(10**x0 if plot.log_x else x0) or _label(x0, plot.log_x)
    right = names.get(10**x1 if plot.log_x else x1) or _label(x1, plot.log_x)
    middle = (height - pad + top) / 2
    return [
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
        f'<line x1="{pad}" y1="{top}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
        f'<text x="{pad}" y="{height - pad + 14}" font-size="10">{escape(left)}</text>',
        f'<text x="{width - pad}" y="{height - pad + 14}" font-size="10" text-anchor="end">'
        f"{escape(right)}</text>",
        f'<text x="{pad - 4}" y="{top + 8}" font-size="10" text-anchor="end">{_label(y1, plot.log_y)}</text>',
        f'<text x="{pad - 4}" y="{height - pad}" font-size="10" text-anchor="end">{_label(y0, plot.log_y)}</text>',
        f'<text x="{width / 2}" y="{height - 8}" font-size="11" text-anchor="middle">'
        f"{escape(_x_title(plot))}{' (log)' if plot.log_x else ''}</text>",
        f'<text x="12" y="{middle}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {middle})">{escape(_y_title(plot))}'
        f"{' (log)' if plot.log_y else ''}</text>",
    ]


def _svg_marks(frame: _Frame) -> list[str]:
    """Each mark inside the x range: a dashed line, its label and value stacked one line below
    the previous mark's, anchored to stay inside the chart."""
    parts, shown = [], 0
    for label, value in frame.plot.marks:
        mx = math.log10(value) if frame.plot.log_x and value > 0 else value
        if not frame.box[0] <= mx <= frame.box[1]:
            continue
        x = frame.x(mx, log_applied=True)
        anchor, dx = ("end", -3) if x > frame.width / 2 else ("start", 3)
        parts += [
            f'<line x1="{x:.1f}" y1="{frame.top}" x2="{x:.1f}" y2="{frame.height - frame.pad}" '
            'stroke="#d29922" stroke-dasharray="4 3"/>',
            f'<text x="{x + dx:.1f}" y="{frame.top + 10 + 12 * shown}" font-size="10" '
            f'text-anchor="{anchor}">{escape(label)} {value:.2g}</text>',
        ]
        shown += 1
    return parts


def figure(probe: str, table: Table) -> Any:
    """A matplotlib Figure of a plotted table (not a pyplot one: it works under any backend,
    inline in a notebook, and saves without a display). Needs matplotlib (optional). Marks are
    points on the curve with their value in the legend, as pytorch-lr-finder draws its
    suggestion."""
    from matplotlib.figure import Figure

    plot = table.plot
    if plot is None:
        raise ValueError(f"{probe}'s table {table.name!r} has no plot")
    series = lines(table, plot)
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.subplots()
    many = len(series) > 1
    for key, line in series.items():
        label = f"{plot.series} {key}" if many else None
        ax.plot([p[0] for p in line], [p[1] for p in line], linewidth=1.2, marker=".",
                markersize=3, label=label)  # fmt: skip
    everything = [p for line in series.values() for p in line]
    for (label, value), colour in zip(
        plot.marks, ("tab:red", "tab:orange", "tab:green"), strict=False
    ):
        y = _at(everything, value, plot.log_x)
        ax.axvline(value, linestyle="--", linewidth=0.8, color=colour)
        if y is not None:
            ax.scatter([value], [y], color=colour, zorder=3, label=f"{label}: {value:.2g}")
    ax.set_xscale("log" if plot.log_x else "linear")
    ax.set_yscale("log" if plot.log_y else "linear")
    names = _names(table, plot)
    if names:  # after the scales: setting a scale resets the ticks
        ticks = sorted(names)
        step = max(1, len(ticks) // 12)  # at most about a dozen names on the axis
        ax.set_xticks(ticks[::step], [names[t] for t in ticks[::step]], rotation=60,
                      ha="right", fontsize=7)  # fmt: skip
    ax.set_xlabel(_x_title(plot))
    ax.set_ylabel(_y_title(plot))
    ax.set_title(f"{probe}: {table.name}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
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
