"""Exports: the whole report as JSON, every probe table as CSV (pandas) plus findings.csv, and
JUnit XML for CI test reporters."""

from __future__ import annotations

import os
from pathlib import Path

from nndiag.errors import UsageError
from nndiag.findings import Finding, Severity
from nndiag.report import Report, Status


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


def junit_xml(report: Report, fail_on: Severity | None) -> str:
    """JUnit XML: one testcase per probe. Findings at or above `fail_on` (None: never) become the
    testcase's <failure>, a probe that could not finish an <error>; the other findings go to
    <system-out>. GitLab, Jenkins and GitHub test reporters read this format."""
    from xml.etree import ElementTree as ET

    failing = set() if fail_on is None else {id(f) for f in report.failing(fail_on)}
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
        counts["tests"] += 1
        case = ET.SubElement(
            suite, "testcase", classname=classname, name=result.name, time=f"{result.seconds:.3f}"
        )
        bad = [f for f in result.findings if id(f) in failing]
        if result.status is Status.FAILED:
            counts["errors"] += 1
            ET.SubElement(
                case, "error", message=result.error, type="probe-failed"
            ).text = result.error
        elif result.status is Status.SKIPPED:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=result.error)
        if bad:
            counts["failures"] += 1
            failure = ET.SubElement(
                case,
                "failure",
                message="; ".join(f"{f.code.value}: {f.message}" for f in bad),
                type=bad[0].code.value,
            )
            failure.text = "\n".join(_finding_text(f) for f in bad)
        rest = [f for f in result.findings if id(f) not in failing]
        if rest:
            ET.SubElement(case, "system-out").text = "\n".join(_finding_text(f) for f in rest)
    totals = {k: str(v) for k, v in counts.items()}
    suite.attrib.update(totals)
    root = ET.Element("testsuites", {"name": "nndiag", **totals})
    root.append(suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _finding_text(f: Finding) -> str:
    where = f" in {', '.join(f.where)}" if f.where else ""
    return f"{f.severity.value} {f.code.value}: {f.message}{where}\n  hint: {f.hint}"


def write_junit(report: Report, path: Path, fail_on: Severity | None) -> Path:
    path.write_text(junit_xml(report, fail_on), encoding="utf-8")
    return path
