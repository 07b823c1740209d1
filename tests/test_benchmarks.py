"""The benchmarks are an instrument that cannot rot unnoticed: every script runs end to end at toy
size and writes a stamped result, and benchmarks/README.md is exactly what those results give."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"
# Every file a user runs (`if __name__ == "__main__"`) but the README's generator, found, not
# listed: a new script is smoke-tested the day it lands.
SCRIPTS = sorted(
    str(path.relative_to(BENCHMARKS))
    for path in BENCHMARKS.rglob("*.py")
    if 'if __name__ == "__main__":' in path.read_text() and path.name != "readme.py"
)


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """script -> the folder its --toy run wrote results to (each script runs once)."""
    ran: dict[str, Path] = {}

    def run(script: str) -> Path:
        if script not in ran:
            results = tmp_path_factory.mktemp("toy")
            done = subprocess.run(
                [sys.executable, str(BENCHMARKS / script), "--toy", "--results", str(results)],
                capture_output=True, text=True, timeout=600, cwd=BENCHMARKS,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            ran[script] = results
        return ran[script]

    return run


def test_every_benchmark_script_is_found() -> None:
    assert {"run_all.py", "registry.py", "lr_quality.py", "real_size/run.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_benchmark_runs_at_toy_size_and_writes_a_stamped_result(
    script: str, toy: Callable[[str], Path]
) -> None:
    [path] = toy(script).glob("*.json")
    result = json.loads(path.read_text())
    assert {"commit", "fingerprint", "machine", "device", "torch", "date"} <= set(result["stamp"])
    assert result["args"]["toy"] is True
    assert result["tables"] and all(t["rows"] for t in result["tables"]), result["tables"]
    for table in result["tables"]:
        assert all(len(row) == len(table["columns"]) for row in table["rows"]), table


def test_the_registry_sweep_checks_stamps_and_tables_its_architecture(
    toy: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    results = toy("registry.py")
    [row] = [json.loads(line) for line in (results / "registry.jsonl").read_text().splitlines()]
    assert row["name"] == "project/deeponet" and row["outcome"] == "checked", row
    assert row["errors"] == 0 and row["warnings"] == 0 and not row["unfinished"], row["findings"]
    assert {"commit", "fingerprint", "machine", "torch", "date"} <= set(row)
    table = (results / "registry.md").read_text()
    assert "| all |  | 1 | 1 | 0 | 0 | 0 |" in table
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from registry import half

    assert f"| {half(row['family'])} | 1 | 1 | 0 | 0 |" in table  # its half of the split, tabled


def test_real_size_merges_another_machines_rows(toy: Callable[[str], Path], tmp_path: Path) -> None:
    """gpu.sh's rows come back from a GPU machine as their own real_size.json: --merge adds them
    to the rows here, keyed and tabled with their device, without measuring anything."""
    other = toy("real_size/run.py") / "real_size.json"
    mine = tmp_path / "real_size.json"
    mine.write_text(json.dumps({"runs": {}}))
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "real_size" / "run.py"), "--merge", str(other),
         "--results", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=BENCHMARKS,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    merged = json.loads(mine.read_text())
    assert (
        set(merged["runs"])
        == set(json.loads(other.read_text())["runs"])
        == {"toy --budget 20steps"}
    )
    [whole, _] = merged["tables"]
    assert whole["columns"][2] == "device" and whole["rows"][0][2] == "CPU"


def test_the_benchmarks_readme_is_generated_from_the_results(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    from readme import MARKER, README, TEMPLATE, render

    template = TEMPLATE.read_text()
    missing = [m["name"] for m in MARKER.finditer(template)
               if not (BENCHMARKS / "results" / f"{m['name']}.json").exists()]  # fmt: skip
    assert not missing, f"no result for {missing}: run those scripts"
    assert README.read_text() == render(template), "run python benchmarks/readme.py"
