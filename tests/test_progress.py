"""Progress bars draw on a terminal and stay silent elsewhere."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

import nndiag
from nndiag.progress import RichProgress

from models import class_batch, mlp


def test_progress_draws_on_a_terminal() -> None:
    console = Console(file=StringIO(), force_terminal=True, width=80)
    nndiag.check(
        mlp(),
        batch=class_batch(),
        probes=["overfit"],
        steps=5,
        lr=1e-6,
        progress=RichProgress(console),
    )
    assert "overfit one batch" in console.file.getvalue()  # type: ignore[attr-defined]


def test_progress_advances_to_total() -> None:
    console = Console(file=StringIO(), force_terminal=True, width=80)
    with RichProgress(console).track("work", total=3) as advance:
        for _ in range(3):
            advance(1)
    assert "3/3" in console.file.getvalue()  # type: ignore[attr-defined]
