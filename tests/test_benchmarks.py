"""The registry sweep runs end to end at toy size, so the trust benchmark cannot rot unnoticed:
one architecture from public-project code, checked in its own worker process, stamped, tabled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT


def test_registry_sweep_of_one_architecture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "registry.jsonl"
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "registry.py"), "--only", "project/deeponet",
         "--workers", "1", "--results", str(results)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    [row] = [json.loads(line) for line in results.read_text().splitlines()]
    assert row["name"] == "project/deeponet" and row["outcome"] == "checked", row
    assert row["errors"] == 0 and row["warnings"] == 0 and not row["unfinished"], row["findings"]
    assert {"commit", "fingerprint", "machine", "torch", "date"} <= set(row)
    table = results.with_suffix(".md").read_text()
    assert "| **all** | | **1** | **1** | **0** | **0** | **0** |" in table
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from registry import half

    assert f"| {half(row['family'])} | 1 | 1 | 0 | 0 |" in table  # its half of the split, tabled
