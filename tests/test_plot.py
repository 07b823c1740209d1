"""Plots people know: titled axes, a diverging tail trimmed, marks as labelled points with their
value, one line per run, layer names on a depth axis, SVG labels that never overlap."""

from __future__ import annotations

import re

from nndiag.plot import figure, lines, svg_chart
from nndiag.report import Plot, Table

# A range test: flat, a descent, the turn, then a blow-up to 50x the start.
CURVE = tuple(
    {"run": run, "lr": 10 ** (-6 + i / 10), "trend": 2.0 - 1.5 * (i >= 30) * min(1, (i - 30) / 20)
     + (0 if i < 55 else 0.5 * 2 ** (i - 55))}
    for run in (0, 1) for i in range(70)
)  # fmt: skip
MARKS = (("estimate", 10 ** (-6 + 52 / 10)), ("suggested", 10 ** (-6 + 50 / 10)))
LR_PLOT = Plot("lr", "trend", log_x=True, marks=MARKS, x_label="Learning rate",
               y_label="Loss (running median)", series="run", trim_tail=True)  # fmt: skip


def test_a_diverging_tail_is_trimmed_after_the_turn() -> None:
    runs = lines(Table("curve", CURVE, plot=LR_PLOT), LR_PLOT)
    assert set(runs) == {"0", "1"}  # one line per run, not a zigzag through both
    for points in runs.values():
        ys = [y for _, y in points]
        assert max(ys) <= 2.0 * 2 and ys[-1] > ys[0]  # ends just past the start: the turn
        assert len(points) < 70
    untrimmed = lines(Table("curve", CURVE), Plot("lr", "trend", log_x=True))
    assert max(y for _, y in untrimmed[""]) > 1000


def test_svg_has_axis_titles_and_mark_labels_that_do_not_overlap() -> None:
    svg = svg_chart(Table("curve", CURVE, plot=LR_PLOT), LR_PLOT, "lr-range · curve")
    assert "Learning rate (log)" in svg and "Loss (running median)" in svg
    labels = re.findall(
        r'<text x="([0-9.]+)" y="([0-9.]+)"[^>]*>(estimate|suggested) ([^<]+)<', svg
    )
    assert [lab[2] for lab in labels] == ["estimate", "suggested"]
    assert labels[0][1] != labels[1][1]  # stacked, not drawn on top of each other
    assert labels[1][3] == "0.1"  # the value is written beside its name
    assert svg.count("<polyline") == 2


def test_png_figure_marks_the_suggestion_with_its_value() -> None:
    fig = figure("lr-range", Table("curve", CURVE, plot=LR_PLOT))
    ax = fig.axes[0]
    assert ax.get_xlabel() == "Learning rate" and ax.get_ylabel() == "Loss (running median)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "suggested: 0.1" in legend and "estimate: 0.16" in legend
    assert max(max(line.get_ydata()) for line in ax.get_lines() if len(line.get_ydata()) > 2) < 5


def test_depth_plot_names_its_layers() -> None:
    rows = tuple(
        {"layer": i, "parameter": f"blocks.{i}.weight", "ratio": 0.1 * (i + 1)} for i in range(4)
    )
    plot = Plot("layer", "ratio", log_y=True, names="parameter")
    ax = figure("gradients", Table("depth", rows, plot=plot)).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [r["parameter"] for r in rows]
    svg = svg_chart(Table("depth", rows, plot=plot), plot, "gradients · depth")
    assert ">blocks.0.weight<" in svg and ">blocks.3.weight<" in svg
