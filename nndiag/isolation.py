"""--isolate: run the check in a child process, so that nothing in user code can make the gate
pass by accident. `os._exit(0)`, a segfault or a hard hang in the model file end the child, and
the parent reports exit 2 with a message; with --timeout the child is interrupted (it writes the
partial report), then killed if it does not stop.

The parent sends the request as JSON and reads the report back as JSON; the child's progress
lines go straight to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nndiag.errors import UsageError
from nndiag.report import Report

GRACE_S = 10.0  # after an interrupt, time for the child to write its partial report


def run_isolated(request: Any, timeout: float | None, quiet: bool) -> Report:
    with tempfile.TemporaryDirectory(prefix="nndiag-") as folder:
        ask, answer = Path(folder) / "request.json", Path(folder) / "answer.json"
        ask.write_text(
            json.dumps({"request": dataclasses.asdict(request), "quiet": quiet}), encoding="utf-8"
        )
        command = [sys.executable, "-m", "nndiag.isolation", str(ask), str(answer)]
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        with _terminated_with(child):
            ended = _wait(child, timeout)
        if not answer.is_file():
            raise UsageError(_why(child.returncode, ended, timeout))
        data = json.loads(answer.read_text(encoding="utf-8"))
    if "error" in data:
        raise UsageError(data["error"])
    if "interrupted" in data:  # stopped before any probe finished: nothing to report
        raise UsageError(_why(0, ended, timeout))
    report = Report.from_dict(data["report"])
    return dataclasses.replace(report, timed_out=ended != "finished")


@contextmanager
def _terminated_with(child: subprocess.Popen[bytes]) -> Iterator[None]:
    """SIGTERM to the parent (a CI runner cancelling the job) ends the child too: no orphan left
    running the check, holding the caller's pipe; the temporary folder is removed on the way
    out. (Only the main thread can set a signal handler.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: Any) -> None:
        child.kill()  # not wait(): the interrupted wait() holds Popen's lock
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    except SystemExit:
        child.wait()  # reaped, then the folder goes with the `with` above
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait(child: subprocess.Popen[bytes], timeout: float | None) -> str:
    """'finished', 'interrupted' (stopped within GRACE_S of the interrupt) or 'killed'."""
    try:
        child.wait(timeout=timeout)
        return "finished"
    except subprocess.TimeoutExpired:
        child.send_signal(signal.SIGINT)  # the child stops and writes the partial report
        try:
            child.wait(timeout=GRACE_S)
            return "interrupted"
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            return "killed"
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        child.wait()
        raise


def _why(code: int, ended: str, timeout: float | None) -> str:
    if ended == "killed":
        return (
            f"the check timed out after {timeout:g} s and did not stop within {GRACE_S:g} s of "
            "the interrupt: it was killed (a hang in native code?)"
        )
    if ended == "interrupted":
        return (
            f"the check timed out after {timeout:g} s before any probe finished (the model's "
            "forward, its data or its factory did not return): no partial report"
        )
    if code < 0:
        return f"the check process died from signal {signal.Signals(-code).name} (in the model's code?)"
    return f"the check process exited with code {code} without a report (os._exit or a crash in user code?)"


def main(ask: Path, answer: Path) -> None:
    """The child: run the check, write {"report": ...} or {"error": ...} to `answer`."""
    from rich.console import Console

    from nndiag.running import Request, check_here

    data = json.loads(ask.read_text(encoding="utf-8"))
    request = Request(**data["request"])
    try:
        report = check_here(request, Console(stderr=True), data["quiet"])
        payload: dict[str, Any] = {"report": report.to_dict()}
    except UsageError as exc:
        payload = {"error": str(exc)}
    except KeyboardInterrupt:  # the parent's timeout, before any probe finished: no traceback
        payload = {"interrupted": True}
    from nndiag.report import json_safe

    answer.write_text(json.dumps(json_safe(payload)), encoding="utf-8")


if __name__ == "__main__":
    os.environ.pop("CI", None)  # the child runs the check itself
    # The parent's stop request is SIGINT; a shell without job control starts background jobs
    # with SIGINT ignored (`nndiag check ... &` in a CI script), and the child would inherit that.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main(Path(sys.argv[1]), Path(sys.argv[2]))
