"""A pytest fixture: `nndiag_check(target_or_model, **options)` runs a check and fails the test
on findings at or above `fail_on` (default: error), returning the Report otherwise:

    def test_my_model_can_train(nndiag_check):
        report = nndiag_check("my_model.py", fail_on="warning")
        assert report.result("overfit").metrics["passed"]

Registered through the `pytest11` entry point when nndiag is installed. Importing this module
stays light: torch loads when a test calls the fixture.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def checker() -> Callable[..., Any]:
    """What the fixture returns: check, fail on findings at or above `fail_on`, return the report."""

    def run(
        target_or_model: Any, *, fail_on: str = "error", strict: bool = False, **options: Any
    ) -> Any:
        import nndiag

        report = nndiag.check(target_or_model, **options)
        if fail_on != "never":
            report.assert_healthy(fail_on=fail_on, strict=strict)
        return report

    return run


@pytest.fixture
def nndiag_check() -> Callable[..., Any]:
    return checker()
