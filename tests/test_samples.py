"""Every sample model gets exactly what its MANIFEST.toml entry pins: each expected code as a root
finding at its severity (and each expected consequence under a root), a healthy sample no root at
warning or error, a sick sample no root error besides its own."""

from __future__ import annotations

import tomllib

import pytest

import nndiag
from nndiag.probes import builtin, raised_by, spec

from conftest import SAMPLES

MANIFEST = tomllib.loads((SAMPLES / "MANIFEST.toml").read_text())
TRAINING = {"lr-range", "overfit"}  # the slow probes: a sick sample runs them only when needed


def test_manifest_lists_every_sample() -> None:
    files = {p.name for p in SAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert files == set(MANIFEST)


# Codes no sample pins yet, each with why: a new code must come with its sick sample.
WITHOUT_SAMPLE = {
    "lr-range-unstable": "no sample yet: no LR lowers the loss on fresh nor on fixed batches, and "
    "every sick sample that gets there has another root",
}


def test_every_code_a_builtin_probe_raises_has_a_sample() -> None:
    """A built-in probe's codes each appear in some sample's pins (as a root or a consequence),
    so that the samples test holds its diagnosis; the known gaps are listed above."""
    pinned = {code for e in MANIFEST.values() for part in ("roots", "consequences")
              for code in e.get(part, {})}  # fmt: skip
    raised = {str(code) for name in builtin() for code in spec(name).codes}
    assert raised - pinned == set(WITHOUT_SAMPLE)


def _probes(entry: dict) -> list[str] | None:
    """Every probe for a healthy sample (no false alarm anywhere); for a sick one every probe
    but the training ones, unless its pinned codes come from them."""
    if entry.get("healthy"):
        return None
    pinned = {**entry["roots"], **entry.get("consequences", {})}
    needed = {p for code in pinned for p in raised_by(code)}
    return [p for p in builtin() if p not in TRAINING or p in needed]


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_sample_gets_exactly_its_pinned_findings(name: str) -> None:
    entry = MANIFEST[name]
    # budget=0: what a sample must produce does not depend on how busy the machine is.
    report = nndiag.check(str(SAMPLES / name), device="cpu", probes=_probes(entry), budget=0)
    assert not report.unfinished, [(r.name, r.error) for r in report.unfinished]
    undeclared = [(f.probe, f.code) for f in report.findings if f.code not in spec(f.probe).codes]
    assert not undeclared, f"codes a probe raises without declaring them in its spec: {undeclared}"
    roots = {(f.code, f.severity.value) for f in report.findings if f.caused_by is None}
    consequences = {(f.code, f.severity.value) for f in report.findings if f.caused_by}
    for code, severity in entry["roots"].items():
        assert (code, severity) in roots, f"{name}: root {code} ({severity}); got {sorted(roots)}"
    for code, severity in entry.get("consequences", {}).items():
        assert (code, severity) in consequences, f"{name}: {code}; got {sorted(consequences)}"
    if entry.get("healthy"):
        loud = {r for r in roots if r[1] != "info"} | {
            r for r in roots if r[0] not in entry["roots"]
        }
        assert not loud, f"{name} is healthy: {[f.message for f in report.findings]}"
    else:
        errors = {code for code, severity in roots if severity == "error"}
        assert errors <= set(entry["roots"]), f"{name}: other root errors {errors}"
    if "parameters" in entry:
        assert report.result("summary").metrics["parameters"] == entry["parameters"]


NINE = ("batch-mixing", "causal-leak", "unregistered-parameters", "nondeterministic-forward",
        "gated-at-init", "exploding-gradients", "vanishing-gradients", "no-nonlinearity")  # fmt: skip


def _first_with(code: str) -> str:
    return next(n for n, e in sorted(MANIFEST.items()) if code in e["roots"])


# Each code on its first sample; exploding and vanishing through time on the recurrent ones too.
NEUTRAL = [(code, _first_with(code)) for code in NINE] + [
    ("exploding-gradients", "sick_rnn_exploding.py"),
    ("vanishing-gradients", "sick_rnn_forgetful.py"),
]


@pytest.mark.parametrize(("code", "name"), NEUTRAL)
def test_a_disease_is_found_under_a_neutral_file_name(tmp_path, code: str, name: str) -> None:
    """The same model file copied to `candidate.py` (and its helper modules beside it): the
    diagnosis is computed from the model, never keyed on a file's name."""
    import shutil

    for helper in SAMPLES.glob("_*.py"):
        shutil.copy(helper, tmp_path / helper.name)
    target = tmp_path / "candidate.py"
    shutil.copy(SAMPLES / name, target)
    entry = MANIFEST[name]
    report = nndiag.check(str(target), device="cpu", probes=_probes(entry), budget=0)
    roots = {(f.code, f.severity.value) for f in report.findings if f.caused_by is None}
    assert (code, entry["roots"][code]) in roots, (name, sorted(roots))
