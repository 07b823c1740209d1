"""Exports: the whole report as JSON, every table as CSV (pandas) plus findings.csv, JUnit XML
for CI test reporters, and a self-contained HTML page.

Every destination is checked before any probe runs (a file is created there and removed), and
every file is written to a temporary name in its folder, then renamed: a failed write never
leaves half a file.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nndiag.errors import OutputError
from nndiag.findings import Finding, Severity
from nndiag.report import ProbeResult, Report, Status

if TYPE_CHECKING:
    import pandas as pd

CSV_NAN = "NaN"  # pandas.read_csv reads it back as NaN; an empty cell is a missing value


def ensure_writable(path: Path, *, directory: bool) -> None:
    """Fail before any probe runs when an export destination cannot be written."""
    folder = path if directory else path.parent
    if not directory and path.is_dir():
        raise OutputError(f"{path} is a directory; give a file path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".nndiag-", delete=True):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to {folder}: {exc.strerror or exc}") from exc
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"cannot write to {path}: permission denied")


def write_atomic(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through a temporary file in the same folder, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes it 0600; a file follows the umask
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def write_text(path: Path, text: str) -> Path:
    def write(p: Path) -> None:
        p.write_text(text, encoding="utf-8")

    return write_atomic(path, write)


def write_json(report: Report, path: Path) -> Path:
    return write_text(path, report.to_json() + "\n")


def write_csv(report: Report, directory: Path) -> list[Path]:
    """One `<probe>-<table>.csv` per table and `findings.csv`; every file, even of an empty
    table, reads back with pandas.read_csv with the same columns; NaN stays NaN."""
    written = []
    for name, frame in report.to_frames().items():
        written.append(write_atomic(directory / f"{name}.csv", functools.partial(_csv, frame)))
    return written


def _csv(frame: pd.DataFrame, path: Path) -> None:
    if frame.columns.empty:  # a table with no columns at all: one placeholder column
        frame = frame.assign(empty=[])
    frame.to_csv(path, index=False, na_rep=CSV_NAN)


def junit_xml(report: Report, fail_on: Severity | None, strict: bool = False) -> str:
    """JUnit XML: one testcase per probe. Findings at or above `fail_on` (None: never) become the
    testcase's <failure>, a probe that could not finish an <error>; the other findings go to
    <system-out>. GitLab, Jenkins and GitHub test reporters read this format."""
    from xml.etree import ElementTree as ET

    failing = set() if fail_on is None else {id(f) for f in report.failing(fail_on, strict)}
    suite = ET.Element(
        "testsuite",
        name=f"nndiag {report.model.target}",
        timestamp=report.model.created,
        time=f"{report.seconds:.3f}",
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in vars(report.model).items():
        ET.SubElement(properties, "property", name=key, value=str(value))
    counts = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    classname = "nndiag." + Path(report.model.target.split(":")[0]).stem
    for result in report.results:
        case = ET.SubElement(
            suite, "testcase", classname=classname, name=result.name, time=f"{result.seconds:.3f}"
        )
        for outcome in _testcase(case, result, failing, report):
            counts[outcome] += 1
    totals = {k: str(v) for k, v in counts.items()}
    suite.attrib.update(totals)
    root = ET.Element("testsuites", {"name": "nndiag", **totals})
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _testcase(case: Any, result: ProbeResult, failing: set[int], report: Report) -> list[str]:
    """Fill one probe's <testcase>; the counters it adds to (tests, errors, skipped, failures)."""
    from xml.etree import ElementTree as ET

    bad = [f for f in result.findings if id(f) in failing]
    rest = [f for f in result.findings if id(f) not in failing]
    outcomes = ["tests"]
    if result.status in (Status.FAILED, Status.INTERRUPTED):
        outcomes.append("errors")
        ET.SubElement(
            case, "error", message=result.error, type=f"probe-{result.status.value}"
        ).text = result.error
    elif result.status is Status.SKIPPED:
        outcomes.append("skipped")
        ET.SubElement(case, "skipped", message=result.error)
    if bad:
        outcomes.append("failures")
        failure = ET.SubElement(
            case, "failure", message="; ".join(f"{f.code}: {f.message}" for f in bad),
            type=bad[0].code,
        )  # fmt: skip
        failure.text = "\n".join(_finding_text(f, report) for f in bad)
    if rest:
        ET.SubElement(case, "system-out").text = "\n".join(_finding_text(f) for f in rest)
    return outcomes


def _finding_text(f: Finding, report: Report | None = None) -> str:
    where = f" in {', '.join(f.where)}" if f.where else ""
    cause = f" (a consequence of {f.caused_by.code})" if f.caused_by else ""
    text = f"{f.severity.value} {f.code}: {f.message}{where}{cause}\n  hint: {f.hint}"
    for c in report.consequences(f) if report is not None else []:
        text += f"\n  consequence: {c.severity.value} {c.code} [{c.probe}]: {c.message}"
    return text


def write_junit(report: Report, path: Path, fail_on: Severity | None, strict: bool = False) -> Path:
    return write_text(path, junit_xml(report, fail_on, strict))
