"""The Python API: modules or targets in, a Report out; failures stay inside their probe."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import nndiag
from nndiag.probes import builtin
from nndiag.report import Report, Status

from conftest import SAMPLES
from models import class_batch, mlp
from probing import replace_measure


def test_check_a_module_with_a_batch() -> None:
    report = nndiag.check(mlp(), batch=class_batch(), device="cpu")
    assert [r.name for r in report.results] == list(builtin())
    assert report.findings == []
    report.assert_healthy(fail_on="warning")
    frames = report.to_frames()
    assert {"summary-modules", "gradients-parameters", "findings"} <= set(frames)
    assert list(frames["findings"].columns)[:2] == ["code", "severity"]


def test_check_a_module_with_make_batch_and_custom_loss() -> None:
    calls = []

    def make_batch(n: int):
        calls.append(n)
        return torch.randn(n, 8), torch.randn(n, 4)

    report = nndiag.check(
        mlp(),
        make_batch=make_batch,
        loss_fn=nn.functional.l1_loss,
        batch_size=5,
        probes=["init-loss"],
    )
    assert calls == [5]
    row = report.result("init-loss").table("loss").rows[0]
    assert row["baseline_kind"] == "unknown"  # l1 has no chance baseline here


def test_assert_healthy_lists_findings() -> None:
    report = nndiag.check(str(SAMPLES / "sick_double_softmax.py"))
    with pytest.raises(AssertionError, match="double-softmax"):
        report.assert_healthy()


def test_user_test_pattern() -> None:
    """What users put in their own suite."""
    nndiag.check(str(SAMPLES / "mlp.py")).assert_healthy()


def test_failing_probe_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(ctx, config):
        raise RuntimeError("probe bug")

    def oom(ctx, config):
        raise torch.OutOfMemoryError("CUDA out of memory")

    replace_measure(monkeypatch, {"data": explode, "gradients": oom})
    report = nndiag.check(mlp(), batch=class_batch())
    status = {r.name: r.status for r in report.results}
    assert status["data"] is Status.FAILED and status["gradients"] is Status.FAILED
    assert status["summary"] is Status.OK and status["activations"] is Status.OK
    assert "probe bug" in report.result("data").error
    assert "lower --batch-size" in report.result("gradients").error
    with pytest.raises(AssertionError, match="probe data failed"):
        report.assert_healthy()


def test_json_round_trip_keeps_everything() -> None:
    report = nndiag.check(str(SAMPLES / "sick_nan.py"))
    text = report.to_json()
    data = json.loads(text)  # strict JSON: NaN is written as "nan"
    assert ": NaN" not in text and '"nan"' in text
    again = Report.from_dict(data)
    assert [f.code for f in again.findings] == [f.code for f in report.findings]
    assert (
        again.result("gradients").table("parameters").display
        == report.result("gradients").table("parameters").display
    )


def test_unknown_probe_name_is_rejected() -> None:
    with pytest.raises(
        nndiag.UsageError, match="unknown probe 'gradient' \\(did you mean 'gradients'"
    ):
        nndiag.check(mlp(), batch=class_batch(), probes=["gradient"])


def test_strict_reaches_the_report_gate() -> None:
    """check(..., strict=True): consequences of a root count toward assert_healthy's gate."""
    loose = nndiag.check(str(SAMPLES / "sick_overconfident.py"), probes=["gradients", "init-loss"])
    strict = nndiag.check(str(SAMPLES / "sick_overconfident.py"), probes=["gradients", "init-loss"],
                          strict=True)  # fmt: skip
    consequences = [f for f in strict.findings if f.caused_by is not None]
    assert consequences and strict.strict and not loose.strict
    extra = [f for f in strict.failing("info") if f not in loose.failing("info")]
    assert extra == consequences
