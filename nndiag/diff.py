"""`nndiag diff OLD.json NEW.json`: what changed between two reports, for review.

Regressions gate: a new root finding at or above `--fail-on`, or a finding whose severity rose.
Everything else is information: resolved findings, and statistics that moved (per-row numbers of
tables with a key column, and key metrics), which gate only under `--fail-on-moved`.

A move is measured where it means something. Scale-like statistics (norms, gains, losses, LRs)
move by a ratio, and their size is |log10(new/old)| decades; fractions (dead or saturated share)
move by points, and 10 points count as one decade. Moves are sorted by size, largest first, and
a move between two values that are both negligible for their column (below `FLOOR` of its largest
value in either report: a bias gradient going from 1e-7 to 1e-4 beside weights at 1) is noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from nndiag.findings import Finding, Severity
from nndiag.report import ProbeResult, Report, Table

# What is compared is declared where it is produced: each result's `watched` metrics and each
# table's `watch` columns (statistics that mean something from one report to the next, not
# timings or counts), so a plugin probe's are compared too.
FRACTIONS = frozenset({"dead_fraction", "saturated_fraction"})
POINTS_PER_DECADE = 0.10  # a fraction moving 10 points weighs as much as a scale moving 10x
FLOOR = 1e-3  # values below this share of their column's largest value are negligible


@dataclass(frozen=True)
class Moved:
    probe: str
    table: str  # "metrics" for a probe metric
    what: str  # the row's key, or the metric's name
    column: str
    old: float
    new: float

    @property
    def size(self) -> float:
        """How far it moved, in decades (fractions: in tens of points)."""
        if self.column in FRACTIONS:
            return abs(self.new - self.old) / POINTS_PER_DECADE
        if self.old > 0 and self.new > 0:
            return abs(math.log10(self.new / self.old))
        return math.inf if self.new != self.old else 0.0  # a sign change or a zero

    def change(self) -> str:
        """Signed: 'x0.0043' (a drop to 0.43%), 'x230', '+12 pts', or the signed difference."""
        if self.column in FRACTIONS:
            return f"{100 * (self.new - self.old):+.0f} pts"
        if self.old > 0 and self.new > 0:
            return f"x{self.new / self.old:.2g}"
        return f"{self.new - self.old:+.3g}"

    @property
    def label(self) -> str:
        return f"{self.probe} {self.table}" + (f" {self.what}" if self.table != "metrics" else "")


@dataclass(frozen=True)
class Comparison:
    old: Report
    new: Report
    added: tuple[Finding, ...]  # new findings, roots first
    resolved: tuple[Finding, ...]
    rose: tuple[tuple[Finding, Finding], ...]  # (before, after) where the severity rose
    moved: tuple[Moved, ...]  # largest first
    min_decades: float

    def regressions(self, fail_on: str) -> list[Finding]:
        if fail_on == "never":
            return []
        threshold = Severity(fail_on).rank
        found = [f for f in self.added if f.caused_by is None and f.severity.rank >= threshold]
        return found + [a for _, a in self.rose if a.severity.rank >= threshold]

    def fails(self, fail_on: str, fail_on_moved: bool = False) -> bool:
        return bool(self.regressions(fail_on)) or (fail_on_moved and bool(self.moved))


def _key(f: Finding) -> tuple[str, tuple[str, ...]]:
    return f.code, tuple(f.where)


def compare(old: Report, new: Report, min_decades: float = 0.3) -> Comparison:
    """`min_decades`: the smallest move reported (0.3 decades is a factor of 2, or 3 points of a
    fraction)."""
    before = {_key(f): f for f in old.findings}
    after = {_key(f): f for f in new.findings}
    added = sorted(
        (f for k, f in after.items() if k not in before),
        key=lambda f: (f.caused_by is not None, -f.severity.rank),
    )
    resolved = tuple(f for k, f in before.items() if k not in after)
    rose = tuple(
        (before[k], f)
        for k, f in after.items()
        if k in before and f.severity.rank > before[k].severity.rank
    )
    moved = sorted((m for m in _moved(old, new) if m.size >= min_decades), key=lambda m: -m.size)
    return Comparison(old, new, tuple(added), resolved, rose, tuple(moved), min_decades)


def _number(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _moved(old: Report, new: Report) -> list[Moved]:
    """Every watched metric and watched table cell present in both reports that changed (one
    entry per statistic: the pair of reports, a probe, a table, a row, a column)."""
    moved: list[Moved] = []
    names = {r.name for r in old.results} & {r.name for r in new.results}
    for name in sorted(names):
        a, b = old.result(name), new.result(name)
        moved += _metric_moves(a, b)
        for table in a.tables:
            other = next((t for t in b.tables if t.name == table.name), None)
            if other is not None and table.key:
                moved += _table_moves(name, table, other)
    return moved


def _metric_moves(a: ProbeResult, b: ProbeResult) -> list[Moved]:
    pairs = [(m, _number(a.metrics.get(m)), _number(b.metrics.get(m))) for m in b.watched]
    return [
        Moved(b.name, "metrics", m, m, x, y)
        for m, x, y in pairs
        if x is not None and y is not None and x != y
    ]


def _table_moves(probe: str, table: Table, other: Table) -> list[Moved]:
    """Rows matched by the table's key, each watched column compared; moves between values
    that are both below FLOOR of the column's largest are noise."""
    rows = {r.get(table.key): r for r in other.rows}
    moved = []
    for column in other.watch:
        pairs = [
            (str(row.get(table.key)), _number(row.get(column)), _number(match.get(column)))
            for row in table.rows
            if (match := rows.get(row.get(table.key))) is not None
        ]
        values = [abs(v) for _, x, y in pairs for v in (x, y) if v is not None]
        floor = FLOOR * max(values, default=0.0) if column not in FRACTIONS else 0.0
        moved += [
            Moved(probe, table.name, what, column, x, y)
            for what, x, y in pairs
            if x is not None and y is not None and x != y and max(abs(x), abs(y)) >= floor
        ]
    return moved


# ---- rendering ---------------------------------------------------------------------------------


def _headline(c: Comparison, limit: int) -> str:
    shown = min(limit, len(c.moved))
    moved = f"{len(c.moved)} statistic(s) moved" + (
        f" ({shown} shown)" if shown < len(c.moved) else ""
    )
    rose = f", {len(c.rose)} rose in severity" if c.rose else ""
    return f"{len(c.added)} new finding(s){rose}, {len(c.resolved)} resolved, {moved}"


def text(c: Comparison, limit: int = 10) -> str:
    lines = [_headline(c, limit)]
    for f in c.added:
        mark = "  new       " if f.caused_by is None else "    caused  "
        lines.append(f"{mark}{f.severity.value:<7} {f.code} [{f.probe}] {f.message}")
        if f.hint and f.caused_by is None:
            lines.append(f"              hint: {f.hint}")
    lines += [
        f"  rose      {a.severity.value:<7} {a.code} [{a.probe}] (was {b.severity.value}) {a.message}"
        for b, a in c.rose
    ]
    lines += [
        f"  resolved  {f.severity.value:<7} {f.code} [{f.probe}] {f.message}" for f in c.resolved
    ]
    lines += [
        f"  moved     {m.label} {m.column}: {m.old:.3g} -> {m.new:.3g} ({m.change()})"
        for m in c.moved[:limit]
    ]
    if len(c.moved) > limit:
        lines.append(f"  ... and {len(c.moved) - limit} more (--limit)")
    return "\n".join(lines)


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def markdown(c: Comparison, limit: int = 10) -> str:
    """A pull-request comment: regressions first, each root with its hint and consequences."""
    out = [f"### nndiag: {_headline(c, limit)}", ""]
    out += _md_new(c) + _md_resolved(c) + _md_moved(c, limit)
    if not (c.added or c.resolved or c.rose or c.moved):
        out.append("No change.")
    return "\n".join(out) + "\n"


def _md_new(c: Comparison) -> list[str]:
    roots = [f for f in c.added if f.caused_by is None]
    if not (roots or c.rose):
        return []
    out = ["#### New findings", ""]
    for f in roots:
        out.append(f"- **{f.severity.value}** `{f.code}` ({f.probe}): {_cell(f.message)}")
        if f.hint:
            out.append(f"  - hint: {_cell(f.hint)}")
        out += [
            f"  - consequence: {x.severity.value} `{x.code}`: {_cell(x.message)}"
            for x in c.new.consequences(f)
            if x in c.added
        ]
    out += [
        f"- **{a.severity.value}** `{a.code}` ({a.probe}), was {b.severity.value}: "
        f"{_cell(a.message)}"
        for b, a in c.rose
    ]
    return [*out, ""]


def _md_resolved(c: Comparison) -> list[str]:
    roots = [f for f in c.resolved if f.caused_by is None]
    if not roots:
        return []
    return [
        "#### Resolved",
        "",
        *(f"- {f.severity.value} `{f.code}` ({f.probe})" for f in roots),
        "",
    ]


def _md_moved(c: Comparison, limit: int) -> list[str]:
    if not c.moved:
        return []
    out = [
        f"#### Moved statistics (at least {c.min_decades:g} decades or "
        f"{c.min_decades * POINTS_PER_DECADE * 100:.0f} points, largest first)",
        "",
        "| probe | table | row | statistic | old | new | change |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    out += [
        f"| {m.probe} | {m.table} | `{_cell(m.what)}` | {m.column} | {m.old:.3g} | {m.new:.3g} "
        f"| {m.change()} |"
        for m in c.moved[:limit]
    ]
    if len(c.moved) > limit:
        out.append(f"\n... and {len(c.moved) - limit} more.")
    return out
