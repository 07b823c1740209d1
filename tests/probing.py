"""Run one probe on a module and a fixed batch, with settings, as the orchestrator would."""

from __future__ import annotations

from typing import Any

from torch import nn

from nndiag.api import run_probe
from nndiag.config import CheckOptions
from nndiag.core.context import Context, Definition, build_context
from nndiag.probes import spec
from nndiag.report import ProbeResult, Status
from nndiag.settings import override


def context(model: nn.Module, batch: Any, loss_fn: Any = None, **options: Any) -> Context:
    definition = Definition(make_batch=lambda n: batch, loss_fn=loss_fn)
    return build_context(
        model, CheckOptions(**{"device": "cpu", **options}), target="t", definition=definition
    )


def config(name: str, **settings: Any) -> Any:
    return override(spec(name).config(), settings, "test")


def run(
    name: str, model: nn.Module, batch: Any, loss_fn: Any = None, **settings: Any
) -> ProbeResult:
    result = run_probe(spec(name), context(model, batch, loss_fn), config(name, **settings))
    assert result.status is Status.OK, result.error
    return result


def codes(result: ProbeResult) -> set[str]:
    return {f.code for f in result.findings}


def replace_measure(monkeypatch: Any, measures: dict[str, Any]) -> None:
    """Make the named probes measure with the given functions for the rest of the test."""
    import dataclasses

    from nndiag import api, probes

    patched = [
        dataclasses.replace(s, measure=measures[s.name]) if s.name in measures else s
        for s in probes.registry()
    ]
    monkeypatch.setattr(api, "registry", lambda: patched)
