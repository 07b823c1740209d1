"""Every sample model produces the finding codes its MANIFEST.toml entry names."""

from __future__ import annotations

import tomllib

import pytest

import nndiag
from nndiag.findings import CATALOG, Severity

from conftest import SAMPLES

MANIFEST = tomllib.loads((SAMPLES / "MANIFEST.toml").read_text())


def test_manifest_lists_every_sample() -> None:
    files = {p.name for p in SAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert files == set(MANIFEST)


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_sample_produces_its_codes(name: str) -> None:
    entry = MANIFEST[name]
    # A healthy sample runs every probe (no false alarm anywhere); a sick one the probes that
    # raise its expected codes, which keeps the suite within CI's time.
    probes = (
        None
        if entry.get("healthy")
        else sorted({p for c in entry["expect"] for p in CATALOG[c].probes})
    )
    # budget=0: what a sample must produce does not depend on how busy the machine is (a
    # loaded CI runner can time a step 20x slower and cut the training probes).
    report = nndiag.check(str(SAMPLES / name), device="cpu", probes=probes, budget=0)
    codes = {f.code for f in report.findings}
    assert all(r.status.value == "ok" for r in report.results), [r.error for r in report.results]
    assert set(entry["expect"]) <= codes, f"{name}: expected {entry['expect']}, got {sorted(codes)}"
    if entry.get("healthy"):
        assert report.failing(Severity.WARNING) == [], [f.message for f in report.findings]
    if "parameters" in entry:
        assert report.result("summary").metrics["parameters"] == entry["parameters"]
