"""Docs stay in step with the code: every finding code and every named threshold is documented."""

from __future__ import annotations

import importlib

import pytest

from nndiag.findings import CATALOG, Code
from nndiag.probes import PROBE_MODULES, ProbeName

from conftest import ROOT

DOCS = ROOT / "docs"


def test_every_code_is_in_the_catalog_and_documented() -> None:
    text = (DOCS / "findings.md").read_text()
    assert set(CATALOG) == set(Code)
    for code in Code:
        assert f"`{code.value}`" in text, code


@pytest.mark.parametrize("name", list(PROBE_MODULES), ids=lambda p: p.value)
def test_every_threshold_constant_is_documented(name: ProbeName) -> None:
    module = importlib.import_module(PROBE_MODULES[name])
    page = (DOCS / "probes" / f"{name.value}.md").read_text()
    constants = [
        k
        for k, v in vars(module).items()
        if k.isupper() and not k.startswith("_") and isinstance(v, (int, float)) and k != "NAME"
    ]
    missing = [k for k in constants if k not in page]
    assert not missing, f"docs/probes/{name.value}.md does not document {missing}"
