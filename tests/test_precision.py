"""The precision probe, and its CPU emulation of autocast against torch.autocast's own kernels."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nndiag.core.precision import Lowered
from nndiag.findings import Severity

from models import class_batch
from probing import codes, run


def test_lowered_follows_autocast_dtype_flow_forward_and_backward() -> None:
    weight = torch.full((1, 1), 300.0, requires_grad=True)
    x = torch.full((1, 1), 300.0)
    with Lowered(torch.float16) as mode:
        y = F.linear(x, weight)  # 9e4: beyond fp16's 65504
        z = x * 1e3  # an fp32 input to an op off autocast's lists: stays fp32
    assert torch.isinf(y).all() and z.item() == 3e5
    assert mode.first_overflow is not None and mode.first_overflow.op in ("addmm", "mm", "linear")
    with Lowered(torch.float16):
        lowered = F.linear(torch.full((1, 1), 300.0), torch.ones(1, 1))  # in fp16: 300
        doubled = lowered * 300.0  # all float inputs in fp16: the product is fp16 too
    assert torch.isinf(doubled).all()
    small = torch.full((1, 1), 1e-3, requires_grad=True)
    with Lowered(torch.float16):
        out = F.linear(torch.ones(1, 1), small)
        (out * 1e-5).sum().backward()  # 1e-5 is below fp16's smallest normal but a subnormal
    assert small.grad is not None
    assert small.grad.item() == torch.tensor(1e-5).half().float().item() != 1e-5


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_an_overflow_is_what_elementwise_rounding_gives_at_the_format_s_edge(
    dtype: torch.dtype,
) -> None:
    # The emulation decides from the largest |value| alone: on either side of the value where
    # rounding to nearest first gives inf, and with a NaN or an inf already there.
    info = torch.finfo(dtype)
    ulp = info.max * info.eps / (2 - info.eps)  # the spacing at the largest value, (2 - eps) 2^e
    first = torch.tensor(info.max + ulp / 2)  # a tie, to even: inf (fp16: 65520, not 65504)
    first_inf = float(first)
    below = float(torch.nextafter(first, torch.tensor(0.0)))  # the float32 value just below
    assert torch.isinf(first.to(dtype)) and not torch.isinf(torch.tensor(below).to(dtype))
    for peak, overflows in ((below, False), (first_inf, True), (-first_inf, True)):
        with Lowered(dtype) as mode:
            F.linear(torch.tensor([[1.0, peak]]), torch.eye(2))
        assert (mode.first_overflow is not None) is overflows, (peak, mode.first_overflow)
    with Lowered(dtype) as mode:  # NaN or inf already in fp32: not an overflow of the format
        F.linear(torch.tensor([[math.nan, first_inf]]), torch.eye(2))
        F.linear(torch.tensor([[math.inf, 1.0]]), torch.eye(2))
    assert mode.first_overflow is None


def test_a_float32_mask_sentinel_maps_to_the_format_s_own_but_other_values_still_overflow() -> None:
    sentinel = torch.finfo(torch.float32).min
    with Lowered(torch.float16) as mode:
        masked = F.linear(torch.tensor([[sentinel, 1.0]]), torch.eye(2))
    assert mode.first_overflow is None and masked[0, 0].item() == -65504.0
    with Lowered(torch.float16):  # beside a -inf (padding) too
        masked = F.linear(torch.ones(1, 1), torch.tensor([[sentinel], [-math.inf]]))
    assert masked.tolist() == [[-65504.0, -math.inf]]
    with Lowered(torch.float16) as mode:
        F.linear(torch.tensor([[sentinel, 7e4]]), torch.eye(2))
    assert mode.first_overflow is not None and mode.first_overflow.peak == -sentinel


class _LoudAttention(nn.Module):
    """Attention scores q·kᵀ beyond fp16's range inside nn.MultiheadAttention's fused forward,
    on inputs whose every module output (and the op's inputs) stays within it."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.attn = nn.MultiheadAttention(64, 4, batch_first=True)
        self.head = nn.Linear(64, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.attn(x, x, x)
        return self.head(out.mean(dim=1))


def test_overflow_inside_a_fused_module_is_found_and_named_as_autocast_does() -> None:
    x, y = (
        torch.randn(8, 12, 64, generator=torch.Generator().manual_seed(0)) * 200,
        class_batch()[1][:8] % 3,
    )
    model = _LoudAttention()
    with torch.autocast("cpu", dtype=torch.float16):
        real_output = model(x)
    assert not torch.isfinite(real_output).all()  # what autocast's real kernels do
    emulated = run("precision", _LoudAttention(), (x, y), emulate=True)
    [found] = [f for f in emulated.findings if f.code == "precision-overflow"]
    assert found.severity is Severity.ERROR and found.where == ("attn",)
    assert "aten.bmm in attn" in found.message
    real = run("precision", _LoudAttention(), (x, y), emulate=False)
    assert "precision-overflow" in codes(real)


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


class _Mask(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keep = torch.ones(x.shape[0], x.shape[0], dtype=torch.bool).tril()
        return torch.where(keep, 0.0, -1e10)  # (N, N), float32 under autocast too


class _MaskedScores(nn.Module):
    """LongT5's local attention: a module returns an additive mask of -1e10 built in fp32; it
    joins the fp16 scores, the sum promotes to fp32 and softmax (fp32 under autocast) zeroes the
    masked positions."""

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(8, 8)
        self.mask = _Mask()
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.query(x) @ x.T + self.mask(x)  # (N, N): examples attend to earlier ones
        return self.head(scores.softmax(-1) @ x)


@pytest.mark.parametrize("emulate", [True, False])
def test_an_fp32_mask_beyond_fp16_range_is_a_note_not_an_overflow(emulate: bool) -> None:
    result = run("precision", _MaskedScores(), class_batch(), emulate=emulate)
    assert result.findings == ()
    assert result.metrics["safe"] == ["fp32", "bf16", "fp16"]
    assert any(note.startswith("mask outputs values beyond fp16") for note in result.notes)


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
    assert found.evidence["flushed"] > 0.8  # the weight gradients all flush
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
            F.cross_entropy(copy(x), y).backward()
        else:
            with Lowered(dtype):
                F.cross_entropy(copy(x), y).backward()
        return torch.cat([p.grad.double().flatten() for p in copy.parameters()])

    expected = F.cosine_similarity(grads(torch.bfloat16), grads(None), dim=0).item()
    assert result.metrics["bf16_grad_cosine"] == pytest.approx(expected, abs=1e-6)
