"""`nndiag diff OLD.json NEW.json`: regressions gate, fixes pass, moves are signed and sorted."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import nndiag
from nndiag.causes import link
from nndiag.cli import app
from nndiag.diff import compare, markdown, text
from nndiag.findings import Code, Severity, finding
from nndiag.report import ModelInfo, ProbeResult, Report, Status, Table

from conftest import SAMPLES, StrictRunner

runner = StrictRunner()
PROBES = ["init-loss", "gradients", "activations"]


def saved(tmp_path: Path, target: str | Path, name: str) -> Path:
    path = tmp_path / name
    path.write_text(nndiag.check(str(target), probes=PROBES).to_json())
    return path


def made(findings: list, grad: dict[str, float], dead: float, loss: float) -> Report:
    """A report with a parameters table and a modules table keyed alike (each statistic must
    still appear once), an activations table and a metric."""
    params = tuple({"parameter": k, "grad_norm": v} for k, v in grad.items())
    modules = tuple(
        {"module": k.split(".")[0], "grad_norm": v} for k, v in grad.items() if "weight" in k
    )
    linked = link(findings)
    return Report(
        model=ModelInfo("model.py", "Net", 10, 10, "cpu", 0, "2026-01-01T00:00:00+00:00", "x", "0", "2"),
        results=(
            ProbeResult("init-loss", Status.OK, metrics={"loss": loss, "ratio": loss / 1.1},
                        watched=("loss", "ratio")),
            ProbeResult("gradients", Status.OK, findings=tuple(f for f in linked if f.probe == "gradients"),
                        tables=(Table("parameters", params, key="parameter", watch=("grad_norm",)),
                                Table("modules", modules, key="module", watch=("grad_norm",)))),
            ProbeResult("activations", Status.OK, findings=tuple(f for f in linked if f.probe == "activations"),
                        tables=(Table("sites", ({"site": "fc1.relu", "dead_fraction": dead},), key="site",
                                      watch=("dead_fraction",)),)),
        ),
    )  # fmt: skip


BUG = [  # a whole layer dead: no-gradient is its consequence
    finding(Code.DEAD_UNITS, "activations", "fc1.relu has all its units dead", where=["fc1.relu"],
            evidence={"dead_fraction": {"fc1.relu": 1.0}, "whole_layers": ["fc1.relu"]}),
    finding(Code.NO_GRADIENT, "gradients", "fc0 gets no gradient", where=["fc0"]),
]  # fmt: skip
FIXED = made([], {"fc0.weight": 0.2, "fc0.bias": 1e-7, "fc1.weight": 0.5}, dead=0.05, loss=1.1)
BROKEN = made(BUG, {"fc0.weight": 0.0008, "fc0.bias": 2e-4, "fc1.weight": 0.5}, dead=1.0, loss=1.1)


def test_a_fix_exits_0_and_lists_resolved_a_bug_exits_1_with_the_new_finding_first() -> None:
    fix = compare(BROKEN, FIXED)
    assert not fix.fails("error")
    assert sorted(f.code for f in fix.resolved) == ["dead-units", "no-gradient"]
    bug = compare(FIXED, BROKEN)
    assert bug.fails("error")
    lines = text(bug).splitlines()
    assert lines[0].startswith("2 new finding(s), 0 resolved")
    assert lines[1].startswith("  new       error   dead-units")  # the root before its consequence
    assert lines[3].startswith("    caused  error   no-gradient")


def test_moves_are_signed_sorted_once_each_and_noise_is_left_out() -> None:
    c = compare(FIXED, BROKEN)
    labels = [(m.label, m.column) for m in c.moved]
    assert len(labels) == len(set(labels))  # one row per statistic, its table named
    assert [m.change() for m in c.moved][:2] == ["+95 pts", "x0.004"]  # largest first, signed
    assert ("gradients parameters fc0.bias", "grad_norm") not in labels  # 1e-7 -> 2e-4: noise
    assert all(m.column != "loss" for m in c.moved)  # unchanged metrics are not moves
    assert "... and" in text(c, limit=1)
    assert not c.fails("never") and c.fails("never", fail_on_moved=True)


def test_a_severity_that_rose_is_a_regression() -> None:
    info, warning = (
        dataclasses.replace(BUG[0], severity=s) for s in (Severity.INFO, Severity.WARNING)
    )
    before, after = made([info], {}, 0.9, 1.1), made([warning], {}, 0.9, 1.1)
    c = compare(before, after)
    assert [a.severity for _, a in c.rose] == [Severity.WARNING] and c.fails("warning")
    assert not c.fails("error") and not compare(after, before).fails("info")


def test_markdown_pull_request_comment_golden(golden) -> None:
    md = markdown(compare(FIXED, BROKEN))
    golden("diff.md", md)
    assert "  - consequence: error `no-gradient`" in md  # nested under its root


def test_cli_bug_then_fix(tmp_path: Path) -> None:
    healthy = saved(tmp_path, SAMPLES / "mlp.py", "healthy.json")
    sick = saved(tmp_path, SAMPLES / "sick_double_softmax.py", "sick.json")
    fixed = runner.invoke(app, ["diff", str(sick), str(healthy)])
    assert fixed.exit_code == 0, fixed.output
    assert "resolved  error   double-softmax" in fixed.output
    broke = runner.invoke(app, ["diff", str(healthy), str(sick)])
    assert broke.exit_code == 1
    assert broke.output.splitlines()[1].startswith("  new       error   double-softmax")
    same = runner.invoke(app, ["diff", str(healthy), str(healthy), "--fail-on-moved"])
    assert same.exit_code == 0 and same.output.startswith(
        "0 new finding(s), 0 resolved, 0 statistic"
    )


@pytest.mark.parametrize("fail_on_moved", [False, True])
def test_cli_changed_init_moves_gate_only_when_asked(tmp_path: Path, fail_on_moved: bool) -> None:
    old = saved(tmp_path, SAMPLES / "mlp.py", "old.json")
    changed = tmp_path / "changed.py"
    changed.write_text((SAMPLES / "mlp.py").read_text() + "\n\n_build = build_model\n\n\ndef build_model():\n"
                       "    model = _build()\n    model[2].weight.data.mul_(4)\n    return model\n")  # fmt: skip
    new = saved(tmp_path, changed, "new.json")
    args = ["diff", str(old), str(new)] + (["--fail-on-moved"] if fail_on_moved else [])
    result = runner.invoke(app, args)
    assert result.exit_code == (1 if fail_on_moved else 0), result.output
    assert "gradients parameters 2.weight weight_norm" in result.output and "(x4)" in result.output
