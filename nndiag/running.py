"""The run layer between the CLI and the child process of --isolate: what to check (Request),
how to show it (Show), the check in this process (check_here), where the report goes
(Outputs) and the exit code. Below both cli.py and isolation.py, so neither imports the other
back."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from nndiag.config import FailOn

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's code for a run stopped by Ctrl-C
# Width of the report when stdout is not a terminal (CI logs, files) and COLUMNS is unset: Rich
# would assume 80; CI log viewers are wider.
PIPED_WIDTH = 120


@dataclass(frozen=True)
class Request:
    """What to check: everything api.check needs, JSON-able for a child process."""

    target: str
    probes: list[str]
    skip: list[str]
    options: dict[str, Any]
    settings: dict[str, dict[str, Any]]
    legacy: dict[str, Any]


@dataclass(frozen=True)
class Show:
    quiet: bool
    details: str | None
    fail_on: FailOn
    strict: bool


def check_here(request: Request, err: Any, quiet: bool) -> Any:
    """The check in this process, with progress on `err` unless quiet."""
    from nndiag.api import check as run_check
    from nndiag.progress import LineProgress, RichProgress

    progress = (
        None if quiet else (RichProgress(err) if err.is_terminal else LineProgress(sys.stderr))
    )
    return run_check(
        request.target,
        probes=request.probes,
        skip=request.skip,
        settings=request.settings,
        thresholds=request.legacy,
        progress=progress,
        **request.options,
    )


STDOUT = Path("-")


@dataclass(frozen=True)
class Outputs:
    """Where a rendered report goes besides the terminal; shared by `check` and `report`."""

    json_path: Path | None = None
    csv_dir: Path | None = None
    junit_path: Path | None = None
    html_path: Path | None = None
    svg_path: Path | None = None
    plot_dir: Path | None = None

    def check_writable(self) -> None:
        """Fail before any probe runs when a destination cannot be written."""
        from nndiag.export import ensure_writable

        for path in (self.json_path, self.junit_path, self.html_path, self.svg_path):
            if path and path != STDOUT:
                ensure_writable(path, directory=False)
        for folder in (self.csv_dir, self.plot_dir):
            if folder:
                ensure_writable(folder, directory=True)

    def emit(self, report: Any, out: Any, err: Any, show: Show) -> int:
        """Render, write every requested file, and return the exit code."""
        from nndiag.export import write_csv, write_json, write_junit, write_text
        from nndiag.findings import Severity
        from nndiag.render import render_report

        piped = self.json_path == STDOUT  # stdout carries the JSON alone, for jq and pipes
        console = err if piped else out
        render_report(report, console, quiet=show.quiet, details=show.details, strict=show.strict)
        if piped:
            typer.echo(report.to_json())
        elif self.json_path:
            write_json(report, self.json_path)
        if self.csv_dir:
            write_csv(report, self.csv_dir)
        if self.junit_path:
            threshold = None if show.fail_on is FailOn.NEVER else Severity(show.fail_on.value)
            write_junit(report, self.junit_path, threshold, show.strict)
        if self.html_path:
            from nndiag.html import page

            write_text(self.html_path, page(report, show.strict))
        if self.svg_path:
            write_text(self.svg_path, _svg(report, show))
        if self.plot_dir:
            try:
                from nndiag.plot import write_pngs

                write_pngs(report, self.plot_dir)
            except ImportError:
                err.print(
                    "nndiag: --plot needs matplotlib (pip install matplotlib); no PNG written"
                )
        return exit_code(report, show.fail_on, show.strict)


def _svg(report: Any, show: Show) -> str:
    from io import StringIO

    from rich.console import Console

    from nndiag.render import render_report

    recorder = Console(record=True, file=StringIO(), width=PIPED_WIDTH)
    render_report(report, recorder, details="all", strict=show.strict)
    return recorder.export_svg(title=f"nndiag {report.model.target}")


def exit_code(report: Any, fail_on: FailOn, strict: bool = False) -> int:
    """1 when a finding reaches --fail-on, or a probe could not finish (its check did not run);
    130 for a run stopped by Ctrl-C, whatever --fail-on says: a partial report proves nothing."""
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FINDINGS if report.fails(fail_on.value, strict) else EXIT_OK
