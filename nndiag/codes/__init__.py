"""One Markdown page per finding code, shipped with the package for `nndiag explain CODE`."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nndiag.findings import CodeInfo


def page(code: str, info: CodeInfo, probes: tuple[str, ...]) -> str:
    """What `nndiag explain CODE` prints: the page's title, the catalogue's line (severity and the
    probes that raise it, from their specs), then the page: nndiag/codes/<code>.md for a built-in
    code; for a plugin's, its `CodeInfo.page` or its title and hint."""
    line = f"**Severity:** {info.severity.value} · **raised by:** {', '.join(probes)}"
    source = resources.files(__name__).joinpath(f"{code}.md")
    if source.is_file():
        title, _, body = source.read_text(encoding="utf-8").partition("\n")
        return f"{title}\n\n{line}\n{body}"
    body = info.page or f"{info.title}.\n\n## What to do\n\n{info.hint}\n"
    return f"# `{code}`\n\n{line} (a plugin)\n\n{body}"
