"""`nndiag diff OLD.json NEW.json`: new and resolved findings, moved statistics, exit codes."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

import nndiag
from nndiag.cli import app
from nndiag.diff import compare, markdown

from conftest import SAMPLES

runner = CliRunner()
PROBES = ["init-loss", "gradients", "activations"]


def saved(tmp_path: Path, target: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(nndiag.check(target, probes=PROBES).to_json())
    return path


def test_a_report_against_itself_exits_0(tmp_path: Path) -> None:
    report = saved(tmp_path, str(SAMPLES / "mlp.py"), "a.json")
    result = runner.invoke(app, ["diff", str(report), str(report)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("0 new finding(s), 0 resolved, 0 statistic(s) moved")


def test_a_changed_init_names_the_moved_layers_and_fails(tmp_path: Path) -> None:
    old = saved(tmp_path, str(SAMPLES / "mlp.py"), "old.json")
    changed = tmp_path / "changed.py"
    changed.write_text((SAMPLES / "mlp.py").read_text() + "\n\n_build = build_model\n\n\ndef build_model():\n"
                       "    model = _build()\n    model[2].weight.data.mul_(4)\n    return model\n")  # fmt: skip
    new = saved(tmp_path, str(changed), "new.json")
    result = runner.invoke(app, ["diff", str(old), str(new)])
    assert result.exit_code == 1, result.output
    assert (
        "gradients 2.weight weight_norm" in result.output and "2.weight init_gain" in result.output
    )
    md = runner.invoke(app, ["diff", str(old), str(new), "--format", "markdown"])
    assert (
        md.output.startswith("### nndiag:")
        and "| gradients | `2.weight` | weight_norm |" in md.output
    )


def test_new_and_resolved_findings() -> None:
    healthy = nndiag.check(str(SAMPLES / "mlp.py"), probes=["init-loss"])
    sick = nndiag.check(str(SAMPLES / "sick_double_softmax.py"), probes=["init-loss"])
    forward = compare(healthy, sick, tolerance=10.0)
    assert [f.code for f in forward.new] == ["double-softmax"] and forward.fails("error")
    backward = compare(sick, healthy, tolerance=10.0)
    assert [f.code for f in backward.resolved] == ["double-softmax"] and not backward.fails("error")
    assert "| resolved | error | `double-softmax` |" in markdown(backward)
