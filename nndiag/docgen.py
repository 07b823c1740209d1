"""The generated parts of the docs: each probe page's settings table and each code's catalogue
row are read from the probes' frozen Configs and the finding catalogue, so the docs cannot
drift from the code. `python -m nndiag.docgen` rewrites them in place; a test fails when a
page is stale.

A generated block sits between two markers, `<!-- generated:NAME -->` and
`<!-- end:NAME -->`; the prose around it is written by hand.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path
from typing import Any

from nndiag.findings import CATALOG
from nndiag.probes import builtin, raised_by, spec

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CODES = Path(__file__).resolve().parent / "codes"


def _cell(value: Any) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def settings_table(config: type) -> str:
    """One row per Config field: key, default, meaning, range, source."""
    fields = dataclasses.fields(config)
    if not fields:
        return "This probe has no settings.\n"
    rows = ["| setting | default | meaning | source |", "| --- | --- | --- | --- |"]
    for f in fields:
        meta = f.metadata
        doc = meta.get("doc", "")
        low, high = meta.get("low"), meta.get("high")
        if low is not None and high is not None:
            doc += f" (from {low:g} to {high:g})"
        elif low is not None:
            doc += f" (at least {low:g})"
        rows.append(
            f"| `{f.name}` | `{_cell(f.default)}` | {_cell(doc)} | {_cell(meta.get('source', ''))} |"
        )
    return "\n".join(rows) + "\n"


def codes_table(probe: str) -> str:
    """The codes a probe raises: built-in ones link to their page; a plugin's own are listed."""
    rows = ["| code | severity | status |", "| --- | --- | --- |"]
    for code, info in {**CATALOG, **spec(probe).catalog}.items():
        if code in spec(probe).codes:
            name = f"[`{code}`](../../nndiag/codes/{code}.md)" if code in CATALOG else f"`{code}`"
            rows.append(f"| {name} | {info.severity} | {info.status} |")
    return "\n".join(rows) + "\n"


def catalogue_table() -> str:
    rows = ["| code | severity | probes | status | title |", "| --- | --- | --- | --- | --- |"]
    for code, info in CATALOG.items():
        probes = ", ".join(raised_by(code))
        rows.append(
            f"| [`{code}`](../nndiag/codes/{code}.md) | {info.severity} | {probes} | {info.status} "
            f"| {_cell(info.title)} |"
        )
    return "\n".join(rows) + "\n"


def causes_list() -> str:
    """The cause rules of nndiag.causes, in the order they are tried."""
    from nndiag.causes import RULES

    lines = []
    for rule in RULES:
        condition = (rule.when.__doc__ or "").strip().split("\n")[0]
        if len(rule.consequences) > len(CATALOG) / 2:
            others = ", ".join(f"`{c}`" for c in CATALOG if c not in rule.consequences)
            consequences = f"every code but {others}"
        else:
            consequences = ", ".join(f"`{c}`" for c in CATALOG if c in rule.consequences)
        when = f" (when {condition.rstrip('.')})" if condition else ""
        lines.append(f"1. `{rule.cause}`{when} causes {consequences}: {rule.why}.")
    return "\n".join(lines) + "\n"


def blocks() -> dict[Path, dict[str, str]]:
    """Every generated block, by page and block name."""
    pages: dict[Path, dict[str, str]] = {
        DOCS / "findings.md": {"catalogue": catalogue_table(), "causes": causes_list()}
    }
    for name in builtin():
        pages[DOCS / "probes" / f"{name}.md"] = probe_blocks(name)
    return pages


def probe_blocks(name: str) -> dict[str, str]:
    """A probe page's generated blocks: its settings and its codes (a plugin's too)."""
    return {"settings": settings_table(spec(name).config), "codes": codes_table(name)}


def render(text: str, generated: dict[str, str]) -> str:
    for name, body in generated.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n).*?(<!-- end:{name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"missing markers for the generated block {name!r}")
        text = pattern.sub(lambda m, b=body: m.group(1) + b + m.group(2), text)  # type: ignore[misc]
    return text


def stale() -> list[Path]:
    return [
        page
        for page, generated in blocks().items()
        if page.read_text(encoding="utf-8") != render(page.read_text(encoding="utf-8"), generated)
    ]


def main(argv: list[str]) -> int:
    """No arguments: rewrite nndiag's own docs. `--plugin NAME PAGE.md`: rewrite the generated
    blocks of an installed plugin probe's page (its author's docs, with the same markers)."""
    pages = blocks()
    if argv:
        if len(argv) != 3 or argv[0] != "--plugin":
            print("usage: python -m nndiag.docgen [--plugin NAME PAGE.md]", file=sys.stderr)
            return 2
        pages = {Path(argv[2]): probe_blocks(argv[1])}
    for page, generated in pages.items():
        text = page.read_text(encoding="utf-8")
        page.write_text(render(text, generated), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
