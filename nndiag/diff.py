"""`nndiag diff OLD.json NEW.json`: what changed between two reports, for CI.

New and resolved findings (by code and where), and statistics that moved by more than a relative
tolerance: per-row numbers of tables with a key column (gradient norms per parameter, activation
statistics per site, Jacobian gains per block) and key metrics (the init loss, the suggested LR).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nndiag.findings import Finding, Severity
from nndiag.report import Report

# Per-row statistics that mean something from one report to the next (not timings or counts).
WATCHED_COLUMNS = {
    "gradients": ("grad_norm", "weight_norm", "ratio", "init_gain"),
    "activations": ("dead_fraction", "saturated_fraction", "std"),
    "jacobian": ("grad_norm", "gain"),
}
WATCHED_METRICS = {
    "init-loss": ("loss", "ratio"),
    "lr-range": ("suggested_lr",),
    "jacobian": ("total_gain",),
}


@dataclass(frozen=True)
class Moved:
    probe: str
    what: str  # table row or metric
    column: str
    old: float
    new: float

    @property
    def change(self) -> float:
        return abs(self.new - self.old) / max(abs(self.old), 1e-12)


@dataclass(frozen=True)
class Comparison:
    new: tuple[Finding, ...]
    resolved: tuple[Finding, ...]
    moved: tuple[Moved, ...]
    tolerance: float

    def fails(self, fail_on: str) -> bool:
        if fail_on == "never":
            return False
        threshold = Severity(fail_on)
        return any(
            f.severity.rank >= threshold.rank and f.caused_by is None for f in self.new
        ) or bool(self.moved)


def _key(f: Finding) -> tuple[str, tuple[str, ...]]:
    return f.code, f.where


def compare(old: Report, new: Report, tolerance: float) -> Comparison:
    before = {_key(f): f for f in old.findings}
    after = {_key(f): f for f in new.findings}
    added = tuple(f for k, f in after.items() if k not in before)
    resolved = tuple(f for k, f in before.items() if k not in after)
    return Comparison(added, resolved, tuple(_moved(old, new, tolerance)), tolerance)


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _moved(old: Report, new: Report, tolerance: float) -> list[Moved]:
    moved = []
    names = {r.name for r in old.results} & {r.name for r in new.results}
    for name in sorted(names):
        a, b = old.result(name), new.result(name)
        for metric in WATCHED_METRICS.get(name, ()):
            x, y = _number(a.metrics.get(metric)), _number(b.metrics.get(metric))
            if x is not None and y is not None:
                moved.append(Moved(name, "metric", metric, x, y))
        for table in a.tables:
            other = next((t for t in b.tables if t.name == table.name), None)
            if other is None or not table.key:
                continue
            rows = {r.get(table.key): r for r in other.rows}
            for row in table.rows:
                match = rows.get(row.get(table.key))
                for column in WATCHED_COLUMNS.get(name, ()):
                    x = _number(row.get(column))
                    y = _number(match.get(column)) if match else None
                    if x is not None and y is not None:
                        moved.append(Moved(name, str(row.get(table.key)), column, x, y))
    return [m for m in moved if m.change > tolerance]


def text(c: Comparison) -> str:
    lines = [
        f"{len(c.new)} new finding(s), {len(c.resolved)} resolved, "
        f"{len(c.moved)} statistic(s) moved more than {c.tolerance:.0%}"
    ]
    lines += [f"  new       {f.severity.value:<7} {f.code} [{f.probe}] {f.message}" for f in c.new]
    lines += [f"  resolved  {f.severity.value:<7} {f.code} [{f.probe}]" for f in c.resolved]
    lines += [
        f"  moved     {m.probe} {m.what} {m.column}: {m.old:.4g} -> {m.new:.4g} ({m.change:+.0%})"
        for m in c.moved
    ]
    return "\n".join(lines)


def markdown(c: Comparison) -> str:
    """A pull-request comment."""
    out = [
        f"### nndiag: {len(c.new)} new finding(s), {len(c.resolved)} resolved, {len(c.moved)} moved statistic(s)",
        "",
    ]
    if c.new or c.resolved:
        out += ["| change | severity | code | probe | message |", "| --- | --- | --- | --- | --- |"]
        out += [
            f"| new | {f.severity.value} | `{f.code}` | {f.probe} | {f.message} |" for f in c.new
        ]
        out += [
            f"| resolved | {f.severity.value} | `{f.code}` | {f.probe} | {f.message} |"
            for f in c.resolved
        ]
        out.append("")
    if c.moved:
        out += [f"Statistics that moved more than {c.tolerance:.0%}:", "",
                "| probe | row | statistic | old | new | change |",
                "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        out += [
            f"| {m.probe} | `{m.what}` | {m.column} | {m.old:.4g} | {m.new:.4g} | {m.change:+.0%} |"
            for m in c.moved
        ]
    if not (c.new or c.resolved or c.moved):
        out.append("No change.")
    return "\n".join(out)
