"""Progress of long probes: Rich bars with an ETA on a terminal, plain periodic lines with an ETA
elsewhere (CI logs), nothing under --quiet (the CLI then passes no Progress at all)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

LINE_EVERY_S = 10.0  # plain lines: at most one per bar every this many seconds


class RichProgress:
    def __init__(self, console: Console) -> None:
        self.console = console

    @contextmanager
    def track(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as bar:
            task = bar.add_task(description, total=total)

            def advance(steps: int = 1) -> None:
                bar.advance(task, steps)

            yield advance

    def message(self, text: str) -> None:
        self.console.print(text, style="dim", highlight=False)


class LineProgress:
    """`nndiag: overfit one batch 120/300 (40%), ETA 12 s` every LINE_EVERY_S seconds."""

    def __init__(self, stream: TextIO, every: float = LINE_EVERY_S) -> None:
        self.stream = stream
        self.every = every

    @contextmanager
    def track(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        started = last = time.monotonic()
        done = 0

        def advance(steps: int = 1) -> None:
            nonlocal done, last
            done += steps
            now = time.monotonic()
            if now - last >= self.every and total:
                last = now
                eta = (now - started) / done * (total - done) if done else 0.0
                self._line(f"{description} {done}/{total} ({done / total:.0%}), ETA {eta:.0f} s")

        yield advance

    def message(self, text: str) -> None:
        self._line(text.removeprefix("nndiag: "))

    def _line(self, text: str) -> None:
        self.stream.write(f"nndiag: {text}\n")
        self.stream.flush()
