"""Real architectures built from transformers configs (no download) stay free of error findings."""

from __future__ import annotations

import pytest
import transformers  # noqa: F401  (a dev dependency: a broken install fails here, never skips)

import nndiag
from nndiag.findings import Severity

from models import bert_batch, lm_batch, tiny_bert, tiny_gpt2


@pytest.mark.parametrize(
    ("build", "batch"), [(tiny_gpt2, lm_batch), (tiny_bert, bert_batch)], ids=["gpt2", "bert"]
)
def test_tiny_transformers_are_healthy(build, batch) -> None:
    report = nndiag.check(build(), batch=batch(), device="cpu")
    assert all(r.status.value == "ok" for r in report.results), [r.error for r in report.results]
    assert report.failing(Severity.WARNING) == [], [f.message for f in report.findings]
    init = report.result("init-loss").table("loss").rows[0]
    assert init["ratio"] == pytest.approx(1.0, abs=0.05)  # ln V at init for a healthy LM


def test_gpt2_summary_counts_tied_weights_once() -> None:
    model = tiny_gpt2()
    report = nndiag.check(model, batch=lm_batch(), probes=["summary"])
    assert report.result("summary").metrics["parameters"] == sum(
        p.numel() for p in model.parameters()
    )
