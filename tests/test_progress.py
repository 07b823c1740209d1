"""Progress bars draw on a terminal and stay silent elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from io import StringIO

import pytest
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


class Recorder:
    """Records every bar a probe opens and how far it advanced."""

    def __init__(self) -> None:
        self.bars: dict[str, list[int]] = {}

    @contextmanager
    def track(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        moved = self.bars.setdefault(description, [total, 0])
        yield lambda steps=1: moved.__setitem__(1, moved[1] + steps)

    def message(self, text: str) -> None:
        self.bars.setdefault(text, [0, 0])


@pytest.mark.parametrize("probe", ["jacobian", "lr-range", "overfit"])
def test_every_iterating_probe_reports_progress(probe: str) -> None:
    recorder = Recorder()
    nndiag.check(mlp(), batch=class_batch(), probes=[probe], steps=5, progress=recorder)
    assert recorder.bars, f"{probe} opened no progress bar"
    for total, moved in recorder.bars.values():
        assert 0 < moved <= total or total == 0  # total 0: a message


def test_plain_lines_with_an_eta_off_a_terminal() -> None:
    from io import StringIO

    from nndiag.progress import LineProgress

    stream = StringIO()
    with LineProgress(stream, every=0.0).track("work", total=4) as advance:
        for _ in range(4):
            advance(1)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("nndiag: work 1/4 (25%), ETA") and len(lines) == 4
