"""The --device cuda paths; skipped without a CUDA GPU (`pytest tests/test_cuda.py` on one)."""

from __future__ import annotations

import pytest
import torch
from test_state_safety import Everything, assert_same, snapshot

import nndiag
from nndiag.api import run_probe
from nndiag.cli import app
from nndiag.config import Amp
from nndiag.probes import builtin, spec
from nndiag.report import Report

from conftest import SAMPLES, StrictRunner
from models import class_batch, lm_batch, tiny_gpt2

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
runner = StrictRunner()


@pytest.mark.parametrize(
    "sample", ["mlp.py", "cnn.py", "char_lm.py", "sick_exploding.py", "sick_rnn_exploding.py"]
)
def test_cuda_finds_what_cpu_finds(sample: str) -> None:
    on_cpu = nndiag.check(str(SAMPLES / sample), device="cpu")
    on_gpu = nndiag.check(str(SAMPLES / sample), device="cuda")
    assert on_gpu.model.device.startswith("cuda")
    assert all(r.status.value == "ok" for r in on_gpu.results), [r.error for r in on_gpu.results]
    # Roots, not consequences: an exploding RNN's range test diverges or not by cuDNN's rounding,
    # and that divergence is reported under exploding-gradients either way.
    assert _roots(on_gpu) == _roots(on_cpu), (on_gpu.findings, on_cpu.findings)


def _roots(report: Report) -> set[str]:
    return {f.code for f in report.findings if f.caused_by is None}


@pytest.mark.parametrize("name", builtin())
def test_cuda_probes_leave_model_and_rngs_untouched(name: str) -> None:
    from probing import config, context

    model = Everything().cuda()
    inputs, targets = class_batch()
    ctx = context(model, (inputs.cuda(), targets.cuda()), device="cuda")
    before = snapshot(model)
    cpu_rng, cuda_rng = torch.get_rng_state(), torch.cuda.get_rng_state()
    result = run_probe(spec(name), ctx, config(name))
    assert result.status.value == "ok", result.error
    assert_same(before, snapshot(model))
    assert torch.equal(cpu_rng, torch.get_rng_state())
    assert torch.equal(cuda_rng, torch.cuda.get_rng_state())


def test_a_cpu_model_is_staged_on_the_gpu_once_and_never_handed_out() -> None:
    from nndiag.core.context import ModelCopier

    model = Everything()
    before = snapshot(model)
    copier = ModelCopier(model, torch.device("cuda"))
    first, second = copier.copy(), copier.copy()
    staged = copier._staged
    assert staged is not None and staged is not model and staged not in (first, second)
    assert {p.device.type for p in (*first.parameters(), *staged.parameters())} == {"cuda"}
    with torch.no_grad():
        first.head.weight.add_(1.0)  # a probe's training must not reach the next copy
    assert torch.equal(second.head.weight, staged.head.weight)
    assert torch.equal(copier.copy().head.weight.cpu(), model.head.weight)
    assert_same(before, snapshot(model))  # the user's model stays on the CPU, untouched
    on_gpu = ModelCopier(Everything().cuda(), torch.device("cuda"))
    on_gpu.copy()
    assert on_gpu._staged is on_gpu.model  # already there: no second copy


@pytest.mark.parametrize("amp", [Amp.BF16, Amp.FP16])
def test_training_probes_under_amp(amp: Amp) -> None:
    report = nndiag.check(
        str(SAMPLES / "mlp.py"), probes=["lr-range", "overfit"], device="cuda", amp=amp
    )
    assert report.result("overfit").metrics["passed"], report.result("overfit").metrics
    assert report.result("lr-range").metrics["suggested_lr"] is not None


def test_jacobian_with_cudnn_rnn() -> None:
    target = str(SAMPLES / "sick_rnn_forgetful.py")
    report = nndiag.check(target, probes=["jacobian"], device="cuda")
    metrics = report.result("jacobian").metrics
    assert metrics["spectral_norm"] > 0 and not report.result("jacobian").notes
    assert "vanishing-gradients" in {f.code for f in report.findings}


def test_gradients_of_an_eval_mode_lstm() -> None:
    model = _LastStep(torch.nn.LSTM(8, 8, batch_first=True)).eval()
    probe = nndiag.check(
        model,
        batch=(torch.randn(4, 6, 8), torch.randn(4, 8)),
        probes=["gradients"],
        device="cuda",
    ).result("gradients")
    assert probe.status.value == "ok", probe.error


class _LastStep(torch.nn.Module):
    def __init__(self, body: torch.nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)[0][:, -1]


def test_jacobian_through_fused_attention() -> None:
    report = nndiag.check(tiny_gpt2(), batch=lm_batch(), probes=["jacobian"], device="cuda")
    result = report.result("jacobian")
    assert result.metrics["spectral_norm"] > 0 and not result.notes and not result.findings


HUNGRY = """
import torch
from torch import nn


class Hungry(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 2)

    def forward(self, x):
        waste = torch.empty(2**40, device=x.device)  # 4 TiB: more than any GPU holds
        return self.lin(x) + waste[:1]


def build_model():
    return Hungry()


def make_batch(n):
    return torch.randn(n, 4), torch.randint(0, 2, (n,))
"""


def test_real_out_of_memory_is_a_clear_usage_error(tmp_path) -> None:
    model_file = tmp_path / "hungry.py"
    model_file.write_text(HUNGRY)
    result = runner.invoke(app, ["check", str(model_file), "--device", "cuda"])
    assert result.exit_code == 2 and "out of memory" in result.stderr, result.output
    assert "lower --batch-size" in result.stderr
