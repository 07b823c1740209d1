"""A self-contained HTML page of a whole report: the verdict, findings, one line per probe,
every curve as an inline SVG and every table (collapsed and cut as in --details). Readable
offline: no script, no external file."""

from __future__ import annotations

from html import escape

from nndiag.condense import cell_text, view
from nndiag.plot import svg_chart
from nndiag.render import MAX_ROWS, verdict
from nndiag.report import Report, Table

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; max-width: 70em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 2em; }
.error { color: #b42318; font-weight: bold; } .warning { color: #9a6700; } .info { color: #0969da; }
.consequence { margin-left: 2em; color: #555; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.85em; }
td, th { border-bottom: 1px solid #ddd; padding: 2px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.dim { color: #666; }
"""


def _table(probe: str, table: Table) -> str:
    if table.plot is not None:
        return svg_chart(table, table.plot, f"{probe} · {table.name}")
    shown = view(table, MAX_ROWS)
    columns = table.display_columns
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(shown.rows):
        cells = []
        for c in columns:
            level = shown.styles.get((i, c), "")
            cells.append(f'<td class="{level}">{escape(cell_text(row.get(c)))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    more = (
        f'<p class="dim">... {shown.hidden} more rows in --csv / --json</p>' if shown.hidden else ""
    )
    return f"<h3>{escape(probe)} · {escape(table.name)}</h3><table><tr>{head}</tr>{''.join(body)}</table>{more}"


def page(report: Report, strict: bool = False) -> str:
    text, _ = verdict(report, strict)
    m = report.model
    findings = []
    for f in report.findings:
        where = f" in {escape(', '.join(f.where))}" if f.where else ""
        css = "consequence" if f.caused_by else ""
        cause = f" (a consequence of {escape(f.caused_by.code)})" if f.caused_by else ""
        findings.append(
            f'<li class="{css}"><span class="{f.severity.value}">{f.severity.value.upper()}</span> '
            f"<b>{escape(f.code)}</b> [{escape(f.probe)}] {escape(f.message)}{where}{cause}"
            f'<br><span class="dim">hint: {escape(f.hint)}</span></li>'
        )
    probes = "".join(
        f"<tr><td><b>{escape(r.name)}</b></td><td>{escape(r.status.value)}</td><td>{r.seconds:.1f} s</td>"
        f"<td style='text-align:left'>{escape(r.headline or r.error)}</td></tr>"
        for r in report.results
    )
    sections = []
    for r in report.results:
        parts = "".join(_table(r.name, t) for t in r.tables if t.rows)  # no empty headers
        notes = "".join(f'<p class="dim">{escape(n)}</p>' for n in r.notes)
        sections.append(f"<h2>{escape(r.name)}</h2>{parts}{notes}")
    notes = "".join(f'<li class="dim">{escape(n)}</li>' for n in report.notes)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>nndiag {escape(m.target)}</title>
<style>{STYLE}</style></head><body>
<h1>{escape(text)}</h1>
<p class="dim">{escape(m.target)} · {escape(m.input_shapes)} · {escape(m.device)} · seed {m.seed}
· nndiag {escape(m.nndiag_version)} · torch {escape(m.torch_version)}</p>
<h2>Findings</h2><ul>{"".join(findings) or "<li>No findings.</li>"}</ul>
<h2>Probes</h2><table>{probes}</table>
<ul>{notes}</ul>
{"".join(sections)}
</body></html>
"""
