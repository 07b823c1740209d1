"""Golden-file tests of the Rich report at a fixed width with colour off."""

from __future__ import annotations

import dataclasses
import math
from io import StringIO

from rich.console import Console

import nndiag
from nndiag.condense import cell_text as format_value
from nndiag.findings import Code, Severity, finding
from nndiag.render import render_report
from nndiag.report import Highlight, ModelInfo, ProbeResult, Report, Status, Table

from conftest import SAMPLES


def render(
    report: Report, quiet: bool = False, details: str | None = "all", width: int = 100
) -> str:
    console = Console(file=StringIO(), width=width, color_system=None)
    render_report(report, console, quiet=quiet, details=details)
    return console.file.getvalue()  # type: ignore[attr-defined]


def frozen_clock(report: Report) -> Report:
    """Timestamps and timings vary between runs; pin them for the golden comparison."""
    model = dataclasses.replace(report.model, created="2026-01-01T00:00:00+00:00")
    results = tuple(dataclasses.replace(r, seconds=0.0) for r in report.results)
    return dataclasses.replace(report, model=model, results=results, seconds=0.0)


def handmade() -> Report:
    rows = (
        {"layer": "fc1", "ratio": 0.5, "dead": 0.0},
        {"layer": "fc2", "ratio": 2e-9, "dead": 0.75},
    )
    return Report(
        model=ModelInfo(
            "model.py",
            "Net",
            1234,
            1000,
            "cpu",
            0,
            "2026-01-01T00:00:00+00:00",
            "Tensor[4, 8] float32 -> targets Tensor[4] int64",
            "0.1.0",
            "2.13.0",
        ),
        results=(
            ProbeResult(
                "gradients",
                Status.OK,
                metrics={"profile_layers": 2},
                tables=(Table("layers", rows, (Highlight(1, "ratio", Severity.WARNING),)),),
                findings=(finding(Code.DEAD_UNITS, "gradients", "fc2 is 75% dead", where=["fc2"]),),
            ),
            ProbeResult("overfit", Status.FAILED, error="out of memory: lower --batch-size"),
            ProbeResult(
                "data",
                Status.OK,
                findings=(
                    finding(
                        Code.NONFINITE_VALUES, "data", "inputs hold 3 NaN values", where=["inputs"]
                    ),
                ),
            ),
        ),
    )


def test_handmade_report_golden(golden) -> None:
    golden("handmade.txt", render(handmade()))


def test_quiet_shows_findings_worst_first(golden) -> None:
    text = render(handmade(), quiet=True)
    assert text.index("nonfinite-values") < text.index("dead-units")
    assert "gradients · layers" not in text
    golden("handmade-quiet.txt", text)


def test_char_lm_summary_and_data_golden(golden) -> None:
    report = nndiag.check(str(SAMPLES / "char_lm.py"), probes=["summary", "data"], device="cpu")
    report = dataclasses.replace(
        report,
        model=dataclasses.replace(
            report.model,
            target="sample_models/char_lm.py",
            torch_version="",
            nndiag_version="0.1.0",
        ),
    )
    golden("char_lm-summary-data.txt", render(frozen_clock(report)))


def test_long_tables_are_cut_with_a_pointer_to_exports() -> None:
    rows = tuple({"i": i} for i in range(100))
    report = dataclasses.replace(
        handmade(), results=(ProbeResult("x", Status.OK, tables=(Table("t", rows),)),)
    )
    text = render(report)
    assert "75 more rows in --csv / --json" in text


def test_format_value() -> None:
    assert format_value(62288) == "62,288"
    assert format_value(0.5) == "0.5"
    assert format_value(2e-9) == "2.00e-09"
    assert format_value(math.nan) == "–"  # a statistic that does not apply
    assert format_value(None) == "–"
    assert format_value(True) == "true"
