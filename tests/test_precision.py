"""The precision probe, and its CPU emulation of autocast against torch.autocast's own kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nndiag.core.precision import RoundThrough
from nndiag.findings import Severity

from models import class_batch
from probing import codes, run


def test_round_through_rounds_matmul_inputs_outputs_and_gradients() -> None:
    weight = torch.full((1, 1), 300.0, requires_grad=True)
    x = torch.full((1, 1), 300.0)
    with RoundThrough(torch.float16):
        y = F.linear(x, weight)  # 9e4: beyond fp16's 65504
        z = x * 1e3  # not a lower-precision op: stays fp32
    assert torch.isinf(y).all() and z.item() == 3e5
    small = torch.full((1, 1), 1e-3, requires_grad=True)
    with RoundThrough(torch.float16):
        out = F.linear(torch.ones(1, 1), small)
    (out * 1e-5).sum().backward()  # 1e-5 is below fp16's smallest normal but a subnormal
    assert small.grad is not None
    assert small.grad.item() == torch.tensor(1e-5).half().float().item() != 1e-5


def _transformer_block() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Embedding(50, 32),
        nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True),
        nn.Flatten(),
        nn.Linear(32 * 6, 50),
    )


def _token_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 50, (8, 6), generator=g), torch.randint(0, 50, (8,), generator=g)


@pytest.mark.parametrize("label", ["bf16", "fp16"])
def test_emulation_matches_autocast_on_cpu(label: str) -> None:
    """The emulated loss and gradients agree with autocast's real CPU kernels."""
    emulated = run("precision", _transformer_block(), _token_batch(), emulate=True)
    real = run("precision", _transformer_block(), _token_batch(), emulate=False)
    rows = {
        name: {r["format"]: r for r in result.table("formats").rows}
        for name, result in (("emulated", emulated), ("real", real))
    }
    e, r = rows["emulated"][label], rows["real"][label]
    assert e["loss"] == pytest.approx(r["loss"], rel=2e-2)
    assert e["grad_cosine"] > 0.99 and r["grad_cosine"] > 0.99
    assert codes(emulated) == codes(real) == set()


class _Loud(nn.Module):
    """A linear layer whose outputs reach 1e5: finite in fp32 and bf16, not in fp16."""

    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(8, 16)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)
        with torch.no_grad():
            self.first.weight.mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.first(x)))


@pytest.mark.parametrize("emulate", [True, False])
def test_fp16_overflow_is_an_error_only_for_the_formats_you_train_in(emulate: bool) -> None:
    result = run("precision", _Loud(), class_batch(), emulate=emulate)
    [found] = result.findings
    assert found.code == "precision-overflow" and found.severity is Severity.ERROR
    assert "fp16" in found.message and found.where == ("first",)
    bf16_only = run("precision", _Loud(), class_batch(), emulate=emulate, formats="bf16")
    assert [f.severity for f in bf16_only.findings] == [Severity.INFO]
    assert bf16_only.metrics["safe"] == ["fp32", "bf16"]


class _Whisper(nn.Module):
    """Gradients of about 1e-9: every one flushes to zero in fp16 without loss scaling."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x) * 1e-9


def test_underflow_without_loss_scaling() -> None:
    result = run("precision", _Whisper(), class_batch())
    [found] = result.findings
    assert found.code == "precision-underflow" and found.severity is Severity.INFO
    assert found.evidence["flushed"] > 0.9
    assert "precision-underflow" in codes(
        run("precision", _Whisper(), class_batch(), formats="fp16")
    )
    explicit = run("precision", _Whisper(), class_batch(), formats="fp16").findings[0]
    assert explicit.severity is Severity.WARNING


def test_gradient_cosine_against_autograd() -> None:
    """bf16's cosine with fp32's gradients, recomputed from two plain backward passes."""
    model, (x, y) = _transformer_block().train(), _token_batch()
    result = run("precision", model, (x, y), emulate=True)

    def grads(dtype: torch.dtype | None) -> torch.Tensor:
        torch.manual_seed(0)
        copy = _transformer_block().train()
        if dtype is None:
            loss = F.cross_entropy(copy(x), y)
        else:
            with RoundThrough(dtype):
                loss = F.cross_entropy(copy(x), y)
        loss.backward()
        return torch.cat([p.grad.double().flatten() for p in copy.parameters()])

    expected = F.cosine_similarity(grads(torch.bfloat16), grads(None), dim=0).item()
    assert result.metrics["bf16_grad_cosine"] == pytest.approx(expected, abs=1e-6)
