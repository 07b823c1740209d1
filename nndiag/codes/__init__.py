"""One Markdown page per finding code, shipped with the package for `nndiag explain CODE`."""

from __future__ import annotations

from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nndiag.findings import CodeInfo


def page(code: str) -> str:
    return resources.files(__name__).joinpath(f"{code}.md").read_text(encoding="utf-8")


def plugin_page(code: str, info: CodeInfo) -> str:
    """A plugin code's page: its own `CodeInfo.page`, or one built from the catalog's fields."""
    if info.page:
        return info.page
    return (
        f"# `{code}`\n\n**Severity:** {info.severity.value} · **raised by:** "
        f"{', '.join(info.probes)} (a plugin)\n\n{info.title}.\n\n## What to do\n\n{info.hint}\n"
    )
