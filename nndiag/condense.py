"""Tables that scale: repeated blocks collapse into one row, long tables keep the rows that
matter. Pure functions of a Table (the terminal and HTML views use them; exports never do)."""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from typing import Any

from nndiag.report import Row, Table

# `h.3.attn.c_attn.weight`: the first numbered path component is the repeat index.
_INDEX = re.compile(r"(^|\.)(\d+)(?=\.|$)")
MIN_REPEATS = 3


@dataclass(frozen=True)
class View:
    rows: list[Row]  # display rows (collapsed cells are strings)
    styles: dict[tuple[int, str], str]  # (view row, column) -> severity name
    hidden: int  # rows left out


def _pattern(key: str) -> tuple[str, int] | None:
    match = _INDEX.search(key)
    if match is None:
        return None
    return key[: match.start(2)] + "{i}" + key[match.end(2) :], int(match.group(2))


def _words(table: Table, row: Row) -> str:
    return "\0".join(
        str(v) for k, v in row.items()
        if k != table.key and isinstance(v, str)
    )  # fmt: skip


def collapse(table: Table) -> tuple[list[Row], list[list[int]]]:
    """Rows with repeated keys (h.0.x ... h.11.x) become one row per pattern, numeric cells
    'median [min–max]'; returns the display rows and, per display row, the source rows."""
    if not table.key:
        return [dict(r) for r in table.rows], [[i] for i in range(len(table.rows))]
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(table.rows):
        found = _pattern(str(row.get(table.key, "")))
        # Repeats of one block: the same pattern and the same words (type, shape) in every
        # other column. A Sequential's children 0..9 (Conv, BatchNorm, ReLU...) are not one.
        name = f"{found[0]}\0{_words(table, row)}" if found else f"\0{i}"
        groups.setdefault(name, []).append(i)
    rows, sources = [], []
    for i, row in enumerate(table.rows):  # the table's own order; a block where it first appears
        found = _pattern(str(row.get(table.key, "")))
        name = f"{found[0]}\0{_words(table, row)}" if found else f"\0{i}"
        members = groups[name]
        if len(members) < MIN_REPEATS:
            rows.append(dict(row))
            sources.append([i])
        elif i == members[0]:
            indices = [_pattern(str(table.rows[k][table.key]))[1] for k in members]  # type: ignore[index]
            pattern = name.partition("\0")[0]
            label = pattern.replace("{i}", f"{min(indices)}…{max(indices)}") + f" ×{len(members)}"
            rows.append(_merged(table, members, label))
            sources.append(members)
    return rows, sources


def _merged(table: Table, members: list[int], label: str) -> Row:
    merged: Row = {table.key: label}
    for column in table.columns:
        if column == table.key:
            continue
        values = [table.rows[i].get(column) for i in members]
        numbers = [
            v
            for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        ]
        if len(numbers) == len(values) and numbers:
            if min(numbers) == max(numbers):
                merged[column] = numbers[0]
            else:
                merged[column] = RangeCell(statistics.median(numbers), min(numbers), max(numbers))
        else:
            distinct = {str(v) for v in values}
            merged[column] = values[0] if len(distinct) == 1 else "…"
    return merged


@dataclass(frozen=True)
class RangeCell:
    """A collapsed numeric cell: the median of the repeats and their range."""

    median: float
    low: float
    high: float


def view(table: Table, max_rows: int) -> View:
    """Collapsed rows; when still too many, the rows with highlights and the extremes of the
    first numeric display column first, then the rest in order, up to max_rows."""
    rows, sources = collapse(table)
    severity = {(h.row, h.column): h.severity.value for h in table.highlights}
    styles_by_row: list[dict[str, str]] = []
    for members in sources:
        cell: dict[str, str] = {}
        for (row, column), level in severity.items():
            if row in members:
                cell[column] = level
        styles_by_row.append(cell)
    keep = list(range(len(rows)))
    if len(rows) > max_rows:
        keep = _important(rows, styles_by_row, table, max_rows)
    styles = {(n, c): level for n, i in enumerate(keep) for c, level in styles_by_row[i].items()}
    return View([rows[i] for i in keep], styles, len(rows) - len(keep))


def _important(
    rows: list[Row], styles: list[dict[str, str]], table: Table, limit: int
) -> list[int]:
    flagged = [i for i, s in enumerate(styles) if s]
    column = next(
        (c for c in (table.display_columns or table.columns)
         if any(isinstance(r.get(c), float) for r in rows) and c != table.key),
        None,
    )  # fmt: skip
    extremes: list[int] = []
    if column is not None:
        numeric = [
            i
            for i, r in enumerate(rows)
            if isinstance(r.get(column), float) and math.isfinite(r[column])
        ]
        ranked = sorted(numeric, key=lambda i: rows[i][column])
        extremes = ranked[:2] + ranked[-2:]
    chosen: list[int] = []
    for i in [*flagged, *extremes, *range(len(rows))]:
        if i not in chosen and len(chosen) < limit:
            chosen.append(i)
    return sorted(chosen)


def cell_text(value: Any) -> str:
    """How a cell reads: '–' where a statistic does not apply (None or NaN)."""
    if isinstance(value, RangeCell):
        return f"{cell_text(value.median)} [{cell_text(value.low)}–{cell_text(value.high)}]"
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.2e}"
    return str(value)
