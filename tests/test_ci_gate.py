"""What a CI pipeline relies on: JUnit XML, configuration files, explain, report re-rendering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

import nndiag
from nndiag.cli import app
from nndiag.codes import page
from nndiag.findings import CATALOG, Code
from nndiag.probes.data import Config as DataConfig

from conftest import ROOT, SAMPLES, StrictRunner
from probing import replace_measure

runner = StrictRunner()
FAST = ["--skip", "overfit", "--skip", "lr-range"]


def test_ci_recipe_gives_exit_code_junit_and_csv(tmp_path: Path) -> None:
    """issue 7's done-when: --junit out.xml --csv reports/ --fail-on warning."""
    junit, csv = tmp_path / "out.xml", tmp_path / "reports"
    target = str(SAMPLES / "sick_frozen.py")
    args = ["check", target, "--junit", str(junit), "--csv", str(csv), "--fail-on", "warning"]
    result = runner.invoke(app, [*args, *FAST])
    assert result.exit_code == 1, result.output
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == [
        "summary", "data", "structure", "init-loss", "gradients", "activations", "jacobian",
        "dependencies", "precision",
    ]  # fmt: skip
    for element in (root, suite):
        assert {"tests", "failures", "errors"} <= set(element.attrib)
    assert all({"classname", "name", "time"} <= set(c.attrib) for c in cases)
    failing = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failing) == {"gradients"}
    assert failing["gradients"].get("type") == "frozen-parameters"
    assert suite.get("failures") == "1" and suite.get("tests") == "9"
    assert (csv / "findings.csv").exists() and (csv / "gradients-parameters.csv").exists()


def test_junit_below_threshold_goes_to_system_out_and_failed_probes_are_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(ctx, config):
        raise RuntimeError("boom")

    replace_measure(monkeypatch, {"activations": broken})
    junit = tmp_path / "j.xml"
    target = str(SAMPLES / "sick_frozen.py")
    result = runner.invoke(
        app, ["check", target, "--junit", str(junit), "--fail-on", "error", *FAST]
    )
    assert result.exit_code == 1  # a probe that could not finish fails the gate
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["gradients"].find("failure") is None
    assert "frozen-parameters" in cases["gradients"].findtext("system-out")
    assert "boom" in cases["activations"].find("error").get("message")
    assert "probe activations (failed): RuntimeError: boom" in result.output


def write_project(root: Path, config: str) -> Path:
    shutil.copy(SAMPLES / "mlp.py", root / "mlp.py")
    (root / "pyproject.toml").write_text(config)
    sub = root / "src" / "deep"
    sub.mkdir(parents=True)
    return sub


CONFIG = """
[project]
name = "user-project"

[tool.nndiag]
target = "mlp.py"
probes = ["summary", "data"]
fail-on = "warning"
device = "cpu"

[tool.nndiag.data]
input_rms_max = 0.5
"""


def test_pyproject_is_found_upward_and_the_cli_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(write_project(tmp_path, CONFIG))
    result = runner.invoke(app, ["check"])
    # target, probes and fail-on from the file; the lowered bound turns unit-scale inputs (RMS
    # about 1) into a warning, and fail-on = warning makes it fail.
    assert result.exit_code == 1, result.output
    assert "input-scale" in result.output and "gradients" not in result.output
    assert runner.invoke(app, ["check", "--fail-on", "never"]).exit_code == 0
    assert DataConfig().input_rms_max == 10.0  # nothing global changed


def test_config_file_option_and_plain_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(SAMPLES / "sick_frozen.py", tmp_path / "model.py")
    (tmp_path / "ci.toml").write_text('target = "model.py"\nprobe = ["gradients"]\n')
    result = runner.invoke(app, ["check", "--config", "ci.toml", "--json", "r.json"])
    assert result.exit_code == 0, result.output  # frozen-parameters is a warning
    data = json.loads((tmp_path / "r.json").read_text())
    assert [p["name"] for p in data["probes"]] == ["gradients"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[tool.nndiag]\nbogus = 1\n", "unknown key 'bogus'"),
        ("[tool.nndiag]\nbatch_sise = 4\n", "did you mean 'batch-size'"),
        ("[tool.nndiag.activations]\ndead_fraction = 0.1\n", "did you mean 'dead_fraction_max'"),
        ("[tool.nndiag.gradient]\nx = 1\n", "did you mean 'gradients'"),
        ("[tool.nndiag]\n[tool.nndiag.thresholds]\nnot_a_threshold = 1\n", "unknown threshold"),
        ('[tool.nndiag]\nthresholds = "high"\n', "must be a table"),
        ('[tool.nndiag]\ntask = "x"\n', "pyproject.toml: task = 'x'"),
        ('[tool.nndiag]\ninput-shape = "x"\n', "invalid --input-shape 'x'"),
        ("[tool.nndiag.activations]\ndead_fraction_max = 2.0\n", "must be within [0.0, 1.0]"),
        ("[tool.nndiag\n", "cannot read config"),
    ],
)
def test_bad_config_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text(config)
    result = runner.invoke(app, ["check", str(SAMPLES / "mlp.py"), "--probe", "summary"])
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    if "bogus" in message:
        assert "batch-size" in result.stderr and "fail-on" in result.stderr  # the valid keys


def test_missing_target_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 2 and "no TARGET" in result.stderr


def test_api_settings_and_deprecated_flat_thresholds() -> None:
    report = nndiag.check(
        str(SAMPLES / "mlp.py"), probes=["data"], settings={"data": {"input_rms_max": 0.5}}
    )
    assert [f.code for f in report.findings] == ["input-scale"]
    assert report.settings["data"]["input_rms_max"] == 0.5
    old = nndiag.check(str(SAMPLES / "mlp.py"), probes=["data"], thresholds={"input_rms_max": 0.5})
    assert [f.code for f in old.findings] == ["input-scale"]
    assert any("deprecated" in note and "input_rms_max" in note for note in old.notes)
    assert DataConfig().input_rms_max == 10.0


def test_legacy_thresholds_table_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.nndiag.thresholds]\ninput_rms_max = 0.5\n")
    result = runner.invoke(
        app, ["check", str(SAMPLES / "mlp.py"), "-p", "data", "--fail-on", "warning"]
    )
    assert result.exit_code == 1 and "input-scale" in result.output
    assert "deprecated" in result.output


def test_set_option_and_unknown_setting(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["check", str(SAMPLES / "mlp.py"), "-p", "data",
                             "--set", "data.input_rms_max=0.5", "--fail-on", "warning"])  # fmt: skip
    assert ok.exit_code == 1 and "input-scale" in ok.output
    bad = runner.invoke(app, ["check", str(SAMPLES / "mlp.py"), "--set", "activations.dead=0"])
    assert bad.exit_code == 2 and "did you mean 'dead_fraction_max'" in bad.stderr


def test_explain_lists_every_code_and_prints_its_page() -> None:
    listing = runner.invoke(app, ["explain"])
    assert listing.exit_code == 0
    assert all(code.value in listing.output for code in Code)
    one = runner.invoke(app, ["explain", "loss-broadcast"])
    assert one.exit_code == 0
    for heading in ("How it is measured", "Typical causes", "What to do"):
        assert heading in one.output
        assert heading in page("loss-broadcast", CATALOG["loss-broadcast"], ("init-loss",))
    assert "squeeze" in one.output
    unknown = runner.invoke(app, ["explain", "no-such-code"])
    assert unknown.exit_code == 2 and "unknown finding code" in unknown.stderr


def test_report_rerenders_a_saved_json_with_html_and_svg(tmp_path: Path) -> None:
    saved = tmp_path / "r.json"
    first = runner.invoke(
        app, ["check", str(SAMPLES / "sick_frozen.py"), "--json", str(saved), *FAST]
    )
    html, svg = tmp_path / "r.html", tmp_path / "r.svg"
    again = runner.invoke(
        app, ["report", str(saved), "--html", str(html), "--svg", str(svg), "--fail-on", "warning"]
    )
    assert again.exit_code == 1  # the saved warning fails under --fail-on warning
    assert "frozen-parameters" in again.output
    assert first.output.splitlines()[2:8] == again.output.splitlines()[2:8]  # same findings text
    assert "<html" in html.read_text().lower() and "frozen-parameters" in html.read_text()
    assert svg.read_text().startswith("<svg")
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a report"}')
    result = runner.invoke(app, ["report", str(bad)])
    assert result.exit_code == 2 and "not an nndiag JSON report" in result.stderr


def test_a_report_of_a_newer_schema_is_refused_in_one_line(tmp_path: Path) -> None:
    import json

    data = json.loads(nndiag.check(str(SAMPLES / "mlp.py"), probes=["summary"]).to_json())
    older = dict(data, schema=1)
    older.pop("strict")  # an older report lacks the newer keys: they take their defaults
    (tmp_path / "old.json").write_text(json.dumps(older))
    assert runner.invoke(app, ["report", str(tmp_path / "old.json"), "--quiet"]).exit_code == 0
    (tmp_path / "new.json").write_text(json.dumps(dict(data, schema=99)))
    result = runner.invoke(app, ["report", str(tmp_path / "new.json")])
    assert result.exit_code == 2
    assert "schema 99, newer than this nndiag reads" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_schema_doc_lists_exactly_the_keys_the_code_writes() -> None:
    import dataclasses
    import re

    from nndiag.probes import probe_names
    from nndiag.report import SCHEMA, ModelInfo

    doc = (ROOT / "docs" / "report-schema.md").read_text()
    sections = dict(re.findall(r"\n## (.+?)\n(.*?)(?=\n## |\Z)", doc, re.S))

    def keys(section: str) -> set[str]:
        cells = re.findall(r"^\| (`[^|]+`) \|", sections[section], re.M)
        return {k for cell in cells for k in re.findall(r"`([^`]+)`", cell)}

    data = nndiag.check(str(SAMPLES / "mlp.py"), probes=["summary"]).to_dict()
    assert keys("Top level") == set(data)
    assert keys("`model`") == {f.name for f in dataclasses.fields(ModelInfo)}
    assert f"# The JSON report (schema {SCHEMA})" in doc
    assert all(f"`{name}`" in sections["A probe"] for name in probe_names())
