"""Are the verdicts right? Findings per model on a calibration set: every sample model (healthy,
by-design and sick, sample_models/MANIFEST.toml says which), and the families of
benchmarks/families.py (real architectures from transformers and timm, on learnable data and on
random labels). Records errors, warnings and infos per model, then the totals issue 15 asks for:

- 0 error-level findings on every healthy model;
- 0 warnings on healthy models with learnable data, at most 0.2 per model with random labels;
- every sick model gets its code.

    python benchmarks/verdicts.py [--only NAME ...] [--samples-only | --families-only]

Nothing here is a test (tests/test_samples.py checks the samples in CI); about 15 minutes on a
2-core CPU.
"""

from __future__ import annotations

import argparse
import time
import tomllib
from collections import Counter
from dataclasses import dataclass

import torch

import nndiag
from nndiag.findings import Severity

from families import ROOT, families
from stamp import Table, arguments, record

SAMPLES = ROOT / "sample_models"


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # learnable | random (healthy) | sick
    expected: tuple[str, ...]  # codes that must appear
    counts: Counter[str]  # root findings per severity, and unfinished probes
    codes: tuple[str, ...]  # every code found
    seconds: float

    @property
    def healthy(self) -> bool:
        return self.kind != "sick"

    @property
    def ok(self) -> bool:
        found = set(self.expected) <= set(self.codes) and not self.counts["failed"]
        if self.kind == "random":
            return found and self.counts["error"] == 0
        if self.kind == "learnable":
            return found and self.counts["error"] == 0 and self.counts["warning"] == 0
        return found


SUFFIX = {Severity.ERROR: "!", Severity.WARNING: "?", Severity.INFO: "."}


def _row(
    name: str, kind: str, expected: tuple[str, ...], report: nndiag.Report, seconds: float
) -> Row:
    counts = Counter(f.severity.value for f in report.findings if f.caused_by is None)
    counts["failed"] = len(report.unfinished)
    codes = tuple(sorted({f.code for f in report.findings}))
    return Row(name, kind, expected, counts, codes, seconds)


def _codes(report: nndiag.Report) -> str:
    """Every code with its severity: ! error, ? warning, . info; consequences in brackets."""
    shown = {f"{f.code}{SUFFIX[f.severity]}" if f.caused_by is None else f"({f.code}{SUFFIX[f.severity]})"
             for f in report.findings}  # fmt: skip
    return " ".join(sorted(shown))


def run_samples(only: set[str]) -> list[Row]:
    manifest = tomllib.loads((SAMPLES / "MANIFEST.toml").read_text())
    rows = []
    for name, entry in sorted(manifest.items()):
        if only and name.removesuffix(".py") not in only:
            continue
        started = time.perf_counter()
        report = nndiag.check(str(SAMPLES / name), device="cpu")
        kind = (
            "random"
            if entry.get("random_labels")
            else ("learnable" if entry.get("healthy") else "sick")
        )
        rows.append(
            _row(
                name.removesuffix(".py"),
                kind,
                tuple(entry["roots"]),
                report,
                time.perf_counter() - started,
            )
        )
        print(_line(rows[-1], report), flush=True)
    return rows


def run_families(only: set[str]) -> list[Row]:
    rows = []
    for family in families():
        if only and family.name not in only:
            continue
        torch.manual_seed(0)
        started = time.perf_counter()
        report = nndiag.check(
            family.build(), make_batch=family.make_batch, loss_fn=family.loss_fn, device="cpu"
        )
        healthy = family.kind in ("learnable", "random")
        expected = () if healthy else (family.kind,)
        rows.append(
            _row(
                family.name,
                family.kind if healthy else "sick",
                expected,
                report,
                time.perf_counter() - started,
            )
        )
        print(_line(rows[-1], report), flush=True)
    return rows


def _line(row: Row, report: nndiag.Report) -> str:
    c = row.counts
    mark = "ok " if row.ok else "BAD"
    return (f"{mark} {row.name:28} {row.kind:9} errors {c['error']} warnings {c['warning']} info {c['info']} "
            f"failed {c['failed']}  {row.seconds:6.1f} s  {_codes(report)}")  # fmt: skip


def summary(rows: list[Row]) -> list[tuple[str, str]]:
    healthy = [r for r in rows if r.healthy]
    learnable = [r for r in healthy if r.kind == "learnable"]
    random_labels = [r for r in healthy if r.kind == "random"]
    sick = [r for r in rows if not r.healthy]
    per = lambda part: f"{sum(r.counts['warning'] for r in part) / max(1, len(part)):.2f}"  # noqa: E731
    return [
        ("healthy models with an error", f"{sum(r.counts['error'] > 0 for r in healthy)} of {len(healthy)}"),
        ("warnings per healthy learnable model", per(learnable)),
        ("warnings per healthy random-label model", per(random_labels)),
        ("sick models that get their code", f"{sum(r.ok for r in sick)} of {len(sick)}"),
        ("probes that could not finish", str(sum(r.counts["failed"] for r in rows))),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=[])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--samples-only", action="store_true")
    group.add_argument("--families-only", action="store_true")
    arguments(parser)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    only = {"mlp", families()[0].name} if args.toy else set(args.only)
    rows = [] if args.families_only else run_samples(only)
    rows += [] if args.samples_only else run_families(only)
    columns = ("model", "kind", "ok", "errors", "warnings", "infos", "unfinished", "seconds",
               "codes")  # fmt: skip
    table = [(r.name, r.kind, r.ok, r.counts["error"], r.counts["warning"], r.counts["info"],
              r.counts["failed"], r.seconds, " ".join(r.codes)) for r in rows]  # fmt: skip
    record("verdicts", [Table("Totals", ("measure", "value"), summary(rows)),
                        Table("Per model", columns, table)], args)  # fmt: skip


if __name__ == "__main__":
    main()
