"""One Markdown page per finding code, shipped with the package for `nndiag explain CODE`."""

from __future__ import annotations

from importlib import resources


def page(code: str) -> str:
    return resources.files(__name__).joinpath(f"{code}.md").read_text(encoding="utf-8")
