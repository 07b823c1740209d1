"""Exports: the whole report as JSON, every probe table as CSV (pandas), plus findings.csv."""

from __future__ import annotations

import os
from pathlib import Path

from nndiag.errors import UsageError
from nndiag.report import Report


def ensure_writable(path: Path, *, directory: bool) -> None:
    """Fail before any probe runs when an export destination cannot be written."""
    folder = path if directory else path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {folder}: {exc.strerror}") from exc
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write to {path}: permission denied")
    if not directory and path.is_dir():
        raise UsageError(f"{path} is a directory; give a file path")


def write_json(report: Report, path: Path) -> Path:
    path.write_text(report.to_json() + "\n", encoding="utf-8")
    return path


def write_csv(report: Report, directory: Path) -> list[Path]:
    """One `<probe>-<table>.csv` per table and `findings.csv`; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in report.to_frames().items():
        path = directory / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
    return written
