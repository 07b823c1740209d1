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


def rich_handmade() -> Report:
    """Headlines, a root cause with its consequences, a cut by the budget, a note, a curve."""
    from nndiag.causes import link
    from nndiag.report import Plot

    findings = link([
        finding(Code.DEAD_UNITS, "activations", "1 ReLU site has all its units dead", where=["net.1"],
                evidence={"dead_fraction": {"net.1": 1.0}, "whole_layers": ["net.1"]}),
        finding(Code.NO_GRADIENT, "gradients", "2 tensors get no gradient", where=["net.0"]),
        finding(Code.OVERFIT_FAILED, "overfit", "could not memorise 16 examples in 300 steps"),
        finding(Code.GATED_AT_INIT, "gradients", "1 tensor is gated at init", where=["head"]),
    ])  # fmt: skip
    curve = tuple(
        {"lr": 10 ** (-7 + i / 12), "trend": 3.0 - (i / 50 if i < 60 else -0.2 * (i - 60))}
        for i in range(90)
    )
    results = (
        ProbeResult("activations", Status.OK, 0.1, findings=(findings[0],), headline="3 sites, most dead 100%"),
        ProbeResult("gradients", Status.OK, 0.2, findings=(findings[1], findings[3]),
                    headline="6 tensors, first/last-quarter ‖g‖/‖W‖ 0.8 over 3 layers, 2 without gradient"),
        ProbeResult("lr-range", Status.OK, 1.5, headline="suggested 0.0032 (high) at batch 16 (default), Adam",
                    tables=(Table("curve", curve, plot=Plot("lr", "trend", log_x=True, trim_tail=True,
                                                            marks=(("suggested", 3.2e-3),))),),
                    cut="40 range steps"),
        ProbeResult("overfit", Status.OK, 2.0, findings=(findings[2],), headline="plateau after 300 steps at lr 0.003"),
    )  # fmt: skip
    return dataclasses.replace(
        handmade(), results=results, notes=("torch uses 8 threads on 2 cores",), seconds=3.8
    )


def test_default_render_goldens_at_80_and_120_columns(golden) -> None:
    for width in (80, 120):
        text = render(rich_handmade(), details=None, width=width)
        lines = text.splitlines()
        assert lines[0] == "nndiag: 1 error · Net, 1.23k parameters · 3.8 s"
        assert max(len(line.rstrip()) for line in lines) <= width
        assert "nan" not in text
        golden(f"default-{width}.txt", text)


def test_consequences_sit_under_their_cause_and_do_not_count() -> None:
    text = render(rich_handmade(), details=None)
    lines = [line.strip() for line in text.splitlines()]
    cause = next(
        i for i, line in enumerate(lines) if line.startswith("ERROR") and "dead-units" in line
    )
    assert lines[cause + 2].startswith("↳ ERROR no-gradient")  # after the cause's hint
    assert "(a consequence of dead-units)" in text


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


def test_repeated_blocks_collapse_and_different_siblings_do_not() -> None:
    from nndiag.condense import collapse

    def table(types: list[str]) -> Table:
        rows = tuple(
            {"module": f"blocks.{i}", "type": t, "output_shape": "4x8", "params": 10 * (i + 1)}
            for i, t in enumerate(types)
        )
        return Table(
            "modules", ({"module": "stem", "type": "Conv2d", "params": 5}, *rows), key="module"
        )

    same, _ = collapse(table(["Block"] * 4))
    assert [r["module"] for r in same] == ["stem", "blocks.0…3 ×4"]
    mixed, _ = collapse(table(["Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]))
    assert [r["module"] for r in mixed] == ["stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3"]
    two, _ = collapse(Table("m", tuple({"module": f"h.{i}.{p}", "type": "Linear"}
                                       for i in range(2) for p in ("q", "k")), key="module"))  # fmt: skip
    assert [r["module"] for r in two] == ["h.0.q", "h.0.k", "h.1.q", "h.1.k"]  # order kept


def test_summary_names_containers_and_functional_use() -> None:
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.att = nn.MultiheadAttention(16, 2, batch_first=True)
            self.layers = nn.ModuleList([nn.Linear(16, 16) for _ in range(2)])
            self.head, self.unused = nn.Linear(16, 3), nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h, _ = self.att(x, x, x)
            for layer in self.layers:
                h = layer(h)
            return self.head(h.mean(1))

    result = nndiag.check(Net(), input_shape=(5, 16), num_classes=3, probes=["summary"]).results[0]
    shapes = {r["module"]: r["output_shape"] for r in result.table("modules").rows}
    assert shapes["att.out_proj"] == "used functionally" and shapes["layers"] == "container"
    assert shapes["unused"] == "not called" and result.headline.endswith(", 1 never called")
