"""A pytest fixture: `nndiag_check(target_or_model, **options)` runs a check and fails the test
on findings at or above `fail_on` (default: error), returning the Report otherwise:

    def test_my_model_can_train(nndiag_check):
        report = nndiag_check("my_model.py", fail_on="warning")  # beside this test file
        assert report.result("overfit").metrics["passed"]

Registered through the `pytest11` entry point when nndiag is installed. Importing this module
stays light: torch loads when a test calls the fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def checker(folder: Path | None = None) -> Callable[..., Any]:
    """What the fixture returns: check, fail on findings at or above `fail_on`, return the report.
    A relative model path is read from `folder` (the calling test file's) when it is there."""

    def run(
        target_or_model: Any, *, fail_on: str = "error", strict: bool = False, **options: Any
    ) -> Any:
        import nndiag

        report = nndiag.check(_resolved(target_or_model, folder), **options)
        if fail_on != "never":
            report.assert_healthy(fail_on=fail_on, strict=strict)
        return report

    return run


def _resolved(target: Any, folder: Path | None) -> Any:
    """'models/net.py[:factory]' next to the test file, as a test author means it."""
    if not isinstance(target, str) or folder is None:
        return target
    path, sep, attr = target.rpartition(":") if ".py:" in target else (target, "", "")
    if path.endswith(".py") and not Path(path).is_absolute() and (folder / path).is_file():
        return str(folder / path) + sep + attr
    return target


@pytest.fixture
def nndiag_check(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return checker(Path(request.path).parent)
