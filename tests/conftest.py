from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
GOLDENS = Path(__file__).resolve().parent / "goldens"

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


class StrictRunner(CliRunner):
    """CliRunner for which a crash is not an exit code: Typer turns an uncaught exception into
    exit 1, which a "sick model exits 1" assertion would accept. Only SystemExit (every exit
    code the CLI chooses) comes back as a Result; anything else is raised in the test."""

    def invoke(self, *args: Any, **kwargs: Any) -> Result:
        result = super().invoke(*args, **kwargs)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens", action="store_true", help="rewrite tests/goldens/ from current output"
    )


@pytest.fixture
def golden(request: pytest.FixtureRequest):
    """golden(name, text): compare with tests/goldens/name, or rewrite it under --update-goldens."""
    update = request.config.getoption("--update-goldens")

    def check(name: str, text: str) -> None:
        path = GOLDENS / name
        if update or not path.exists():
            if not update:
                pytest.fail(f"golden {name} is missing: run pytest --update-goldens")
            path.write_text(text, encoding="utf-8")
            return
        assert text == path.read_text(encoding="utf-8"), f"render differs from golden {name}"

    return check


@pytest.fixture(autouse=True)
def _not_in_ci_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """CI=1 turns --isolate on by default; tests run checks in process unless they say so."""
    monkeypatch.delenv("CI", raising=False)


@pytest.fixture(autouse=True)
def _seeded() -> None:
    """Every test starts from the same global RNG state: a model built without a seed (tests'
    mlp()) is the same whichever tests ran before it."""
    import torch

    torch.manual_seed(0)
