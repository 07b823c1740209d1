"""A diagnostic tool must not crash, hang or harm: OOM, Ctrl-C, frozen models, fuzzed models."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_state_safety import assert_same, snapshot
from torch import nn

import nndiag
from nndiag.cli import app
from nndiag.core.training import Trainer
from nndiag.probes import builtin
from nndiag.report import Status

from conftest import SAMPLES, StrictRunner
from models import class_batch, mlp
from probing import replace_measure

runner = StrictRunner()


def test_out_of_memory_fails_one_probe_and_the_report_is_still_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def oom(ctx, config):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    replace_measure(monkeypatch, {"gradients": oom})
    out = tmp_path / "r.json"
    target = str(SAMPLES / "mlp.py")
    result = runner.invoke(app, ["check", target, "--json", str(out), "--skip", "overfit"])
    assert result.exit_code == 1
    assert "lower --batch-size" in result.output
    probes = {p["name"]: p for p in json.loads(out.read_text())["probes"]}
    assert probes["gradients"]["status"] == "failed"
    assert "lower --batch-size" in probes["gradients"]["error"]
    assert all(p["status"] == "ok" for name, p in probes.items() if name != "gradients")
    assert "lr-range" in probes  # probes after the failed one still ran


def test_ctrl_c_during_training_stops_with_a_partial_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_step = Trainer.step
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "step", interrupted)
    out = tmp_path / "r.json"
    args = ["check", str(SAMPLES / "mlp.py"), "--json", str(out), "--fail-on", "never"]
    result = runner.invoke(app, args)
    assert result.exit_code == 130  # interrupted, even where findings would not fail the run
    assert result.stdout.startswith("nndiag: INTERRUPTED, the report is partial")
    data = json.loads(out.read_text())
    assert data["interrupted"] is True
    names = [p["name"] for p in data["probes"]]
    assert names[-1] == "lr-range" and "overfit" not in names  # stopped inside lr-range
    assert data["probes"][-1]["status"] == "interrupted"
    assert data["probes"][-1]["error"].startswith("interrupted after")
    assert all(p["status"] == "ok" for p in data["probes"][:-1])


def test_eval_model_that_cannot_train_on_the_batch_is_bad_input() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)).eval()
    batch = (torch.randn(1, 4), torch.tensor([1]))
    with pytest.raises(nndiag.UsageError, match="in train mode: ValueError: Expected more than 1"):
        nndiag.check(model, batch=batch)


def test_all_frozen_model_skips_training_and_fails_the_gate() -> None:
    model = mlp().requires_grad_(False)
    report = nndiag.check(model, batch=class_batch(), device="cpu")
    status = {r.name: r.status for r in report.results}
    assert status["overfit"] is Status.SKIPPED and status["lr-range"] is Status.SKIPPED
    assert "nothing to train" in report.result("overfit").error
    (frozen,) = [f for f in report.findings if f.code == "frozen-parameters"]
    assert frozen.severity.value == "error" and "nothing will train" in frozen.message
    with pytest.raises(AssertionError, match="frozen-parameters"):
        report.assert_healthy()


# ---- fuzzing: random small architectures never crash nndiag and are never modified ---------------

ACTIVATIONS = [nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.Identity, nn.SiLU]


class Residual(nn.Module):
    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Recurrent(nn.Module):
    def __init__(self, cell: str, width: int, classes: int, tokens: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(12, width) if tokens else nn.Linear(3, width)
        self.rnn = getattr(nn, cell)(width, width, batch_first=True)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(x))[0][:, -1])


@st.composite
def architectures(draw):
    """(model, batch) for a random MLP, CNN or RNN with random depth, width, activation, norm,
    residual connections, dropout, batch size and task."""
    kind = draw(st.sampled_from(["mlp", "cnn", "rnn"]))
    depth, width = draw(st.integers(1, 4)), draw(st.integers(2, 12))
    batch = draw(st.integers(1, 6))
    regression = draw(st.booleans())
    classes = 1 if regression else draw(st.integers(2, 5))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    if kind == "rnn":
        tokens = draw(st.booleans())
        model: nn.Module = Recurrent(
            draw(st.sampled_from(["RNN", "LSTM", "GRU"])), width, classes, tokens
        )
        steps = draw(st.integers(1, 10))
        x = (
            torch.randint(0, 12, (batch, steps), generator=g)
            if tokens
            else torch.randn(batch, steps, 3, generator=g)
        )
    else:
        act = draw(st.sampled_from(ACTIVATIONS))
        norm = draw(st.sampled_from(["none", "batch", "layer"]))
        residual, dropout = draw(st.booleans()), draw(st.sampled_from([0.0, 0.5]))
        layers: list[nn.Module] = []
        for _ in range(depth):
            if kind == "mlp":
                core = nn.Linear(width, width)
                normed = {"batch": nn.BatchNorm1d(width), "layer": nn.LayerNorm(width)}.get(norm)
            else:
                core = nn.Conv2d(width, width, 3, padding=1)
                normed = {"batch": nn.BatchNorm2d(width), "layer": nn.GroupNorm(1, width)}.get(norm)
            block = nn.Sequential(core, *([normed] if normed else []), act(), nn.Dropout(dropout))
            layers.append(Residual(block) if residual else block)
        if kind == "mlp":
            model = nn.Sequential(nn.Linear(5, width), *layers, nn.Linear(width, classes))
            x = torch.randn(batch, 5, generator=g)
        else:
            pool = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            model = nn.Sequential(
                nn.Conv2d(2, width, 3, padding=1), *layers, *pool, nn.Linear(width, classes)
            )
            x = torch.randn(batch, 2, 6, 6, generator=g)
    y = (
        torch.randn(batch, 1, generator=g)
        if regression
        else torch.randint(0, classes, (batch,), generator=g)
    )
    model.train(draw(st.booleans()))
    return model, (x, y)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(architectures())
def test_fuzzed_architectures_get_a_complete_report_and_stay_untouched(case) -> None:
    model, batch = case
    before = snapshot(model)
    rng = (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())
    try:
        report = nndiag.check(
            model,
            batch=batch,
            device="cpu",
            steps=20,
            range_steps=20,
            settings={"lr-range": {"sweep_steps": 10}},
        )
    except nndiag.UsageError as exc:
        # The only acceptable refusal: bad input with a one-line reason (e.g. BatchNorm in train
        # mode on a batch of one).
        assert str(exc) and "\n" not in str(exc)
    else:
        assert [r.name for r in report.results] == list(builtin())
        for result in report.results:
            assert result.status is not Status.FAILED or result.error, result.name
        assert not [r.name for r in report.results if r.status is Status.FAILED], [
            (r.name, r.error) for r in report.results if r.status is Status.FAILED
        ]
        report.to_json()  # always serialisable
    assert_same(before, snapshot(model))
    assert torch.equal(rng[0], torch.get_rng_state()) and rng[1] == random.getstate()
    assert (rng[2] == np.random.get_state()[1]).all()  # numpy's too
