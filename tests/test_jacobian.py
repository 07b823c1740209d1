"""The jacobian probe against the exact Jacobian (torch.autograd.functional.jacobian, float64)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import nndiag
from nndiag.api import run_probe
from nndiag.core.contract import eval_mode_backward
from nndiag.core.surface import blocks, calibrated_copy, ordered_blocks, surface
from nndiag.probes import spec
from nndiag.probes.jacobian import Config
from nndiag.probes.jacobian.estimators import hutchinson_profile, nonlinearity, score, spectral_norm
from nndiag.probes.jacobian.sequences import memory_horizon, recurrent_radii

from conftest import SAMPLES
from models import tiny_gpt2
from probing import config

DEFAULTS = Config()
HUTCHINSON_PROBES = DEFAULTS.hutchinson_probes


class InPlaceNet(nn.Module):
    """Tanh and in-place ReLUs (module and functional): hooks must see the pre-in-place grads."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 10)
        self.act = nn.ReLU(inplace=True)
        self.b = nn.Linear(10, 10)
        self.c = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.a(x))
        return self.c(F.relu(torch.tanh(self.b(h)) + h, inplace=True))


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 12), nn.Tanh(), nn.Linear(12, 12), nn.GELU(), nn.Linear(12, 3)
    )


def context(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    from probing import context as probing_context

    return probing_context(model, (x, y))


def exact_jacobian(fn, x: torch.Tensor) -> torch.Tensor:
    """(outputs, inputs) matrix of the whole batch in float64."""
    jac = torch.autograd.functional.jacobian(fn, x.double())
    out_numel = jac.shape[: jac.dim() - x.dim()].numel()
    return jac.reshape(out_numel, x.numel())


def prepared(model: nn.Module, x: torch.Tensor):
    model = model.double()
    ctx = context(model, x.double(), torch.zeros(x.shape[0], dtype=torch.long))
    copy = calibrated_copy(ctx, None, DEFAULTS.calibration_batches)
    order = ordered_blocks(copy, ctx.inputs)
    return copy, order, surface(copy, ctx.inputs, order)


@pytest.mark.parametrize("build", [tiny, InPlaceNet], ids=["tanh-gelu", "inplace"])
def test_hutchinson_frobenius_within_its_error_bound(build) -> None:
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    model, order, surface = prepared(build(), x)
    jac = exact_jacobian(lambda t: model(t), x)
    sv = torch.linalg.svdvals(jac)
    exact = float((sv**2).sum())
    for probes in (HUTCHINSON_PROBES, 256):
        profile = hutchinson_profile(surface, order, probes, torch.Generator().manual_seed(0))
        assert profile is not None
        estimate = sum(profile.frobenius_sq) / probes
        # Gaussian Hutchinson: Var = 2‖JJᵀ‖_F² / k = 2 Σσ⁴ / k.
        bound = 4 * math.sqrt(2 * float((sv**4).sum()) / probes)
        assert abs(estimate - exact) <= bound, (probes, estimate, exact, bound)


def test_block_norms_estimate_each_sub_jacobian() -> None:
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    model, order, surface = prepared(tiny(), x)
    profile = hutchinson_profile(surface, order, 512, torch.Generator().manual_seed(0))
    assert profile is not None
    hidden = model[:3](x.double())  # output of block 2 (the second Linear)
    sub = exact_jacobian(lambda h: model[3:](h), hidden)
    exact = float(torch.linalg.matrix_norm(sub) ** 2)
    estimate = sum(profile.norms_sq[2]) / 512
    sv = torch.linalg.svdvals(sub)
    assert abs(estimate - exact) <= 4 * math.sqrt(2 * float((sv**4).sum()) / 512)


@pytest.mark.parametrize("build", [tiny, InPlaceNet], ids=["tanh-gelu", "inplace"])
def test_spectral_norm_within_one_percent(build) -> None:
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    model, _order, surface = prepared(build(), x)
    exact = float(torch.linalg.matrix_norm(exact_jacobian(lambda t: model(t), x), 2))
    generator = torch.Generator().manual_seed(0)
    estimate, products = spectral_norm(
        surface, generator, DEFAULTS.spectral_iterations, DEFAULTS.spectral_tolerance
    )
    assert estimate == pytest.approx(exact, rel=0.01)
    assert products <= 24  # Lanczos: d = 24 products would be exact


def test_probe_metrics_match_the_oracle() -> None:
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(4))
    model = tiny().double()
    ctx = context(model, x.double(), torch.zeros(5).long())
    result = run_probe(spec("jacobian"), ctx, config("jacobian"))
    jac = exact_jacobian(lambda t: model(t), x)
    sv = torch.linalg.svdvals(jac)
    m = result.metrics
    assert m["spectral_norm"] == pytest.approx(float(sv.max()), rel=0.01)
    # mean σ² per example: ‖J‖_F² / batch / min(d_in, d_out) = Σσ² / (5 · 3)
    exact_mean = float((sv**2).sum()) / 15
    bound = 4 * math.sqrt(2 * float((sv**4).sum()) / HUTCHINSON_PROBES) / 15
    assert abs(m["mean_sq_singular"] - exact_mean) <= bound
    assert [r["block"] for r in result.table("blocks").rows] == ["x (input)", *"01234"]


def test_nonlinearity_zero_for_affine_positive_otherwise() -> None:
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(5))
    affine = nn.Sequential(*[nn.Linear(6, 6) for _ in range(6)])
    norm_only = nn.Sequential(nn.Linear(6, 6), nn.LayerNorm(6), nn.Linear(6, 3))
    for model, nonlinear in [(affine, False), (tiny(), True), (norm_only, True)]:
        _m, _o, surface = prepared(model.float(), x)
        value = score(*nonlinearity(surface))
        assert (value >= DEFAULTS.nonlinearity_min) is nonlinear, (model, value)


class Square(nn.Module):
    """f(x) = (w·x)² elementwise, w = 1: the nonlinearity score has a closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.w * x) ** 2


def test_nonlinearity_score_against_its_closed_form() -> None:
    """a = the batch, b = a rolled by one example: f((a+b)/2) - (f(a)+f(b))/2 = -(a-b)²/4 and
    f(a) - f(b) = (a-b)(a+b), so the score is sqrt(Σ(a-b)⁴/16 / Σ(a-b)²(a+b)²)."""
    x = torch.randn(8, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    _m, _o, s = prepared(Square(), x)
    a, b = s.x0, s.x0.roll(1, dims=0)
    exact = math.sqrt(float(((a - b) ** 4).sum() / 16) / float(((a - b) ** 2 * (a + b) ** 2).sum()))
    assert score(*nonlinearity(s)) == pytest.approx(exact, rel=1e-9)


class LastStep(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn, self.head = nn.RNN(3, 6, batch_first=True), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def test_temporal_sensitivity_against_the_exact_jacobian() -> None:
    """Σ over probes of ‖∂(yᵀv)/∂x_t‖², divided by the probes, estimates ‖J_t‖_F² (Hutchinson);
    the bound is 4 standard deviations, sqrt(2 Σσ⁴ / probes) per step."""
    from nndiag.probes.jacobian.sequences import temporal_sensitivity_sq

    x = torch.randn(2, 8, 3, generator=torch.Generator().manual_seed(7))
    _m, _o, s = prepared(LastStep(), x)
    probes = 400
    estimate = temporal_sensitivity_sq(s, 1, probes, torch.Generator().manual_seed(0))
    jac = torch.autograd.functional.jacobian(s, s.x0)  # (2, 2, 2, 8, 3): out, then x
    for t in range(8):
        j_t = jac[:, :, :, t, :].reshape(4, 6)
        sv = torch.linalg.svdvals(j_t)
        exact = float((sv**2).sum())
        bound = 4 * math.sqrt(2 * float((sv**4).sum()) / probes)
        assert abs(estimate[t] / probes - exact) <= bound, (t, estimate[t] / probes, exact)


def test_batch_mixing_leak_against_the_exact_jacobian() -> None:
    """own and other: ‖vᵀJ‖ over example 0's inputs and over the others', for v on example 0."""
    from nndiag.core.leaks import gradient_norms

    class Mixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x + 0.01 * x.mean(dim=0))  # every example leaks into every other

    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(8))
    _m, _o, s = prepared(Mixer(), x)
    v = torch.zeros(5, 3, dtype=torch.float64)
    v[0] = torch.randn(3, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    mask = torch.zeros(5, 4, dtype=torch.bool)
    mask[0] = True
    [[own, other]] = gradient_norms(s, [v], [[mask, ~mask]])
    g = torch.einsum("bc,bcxf->xf", v, torch.autograd.functional.jacobian(s, s.x0))
    assert own == pytest.approx(float(g[0].norm()), rel=1e-9)
    assert other == pytest.approx(float(g[1:].norm()), rel=1e-9)
    assert 0 < other / own < 0.05  # a 1% mean: a small leak, far above round-off


def test_blocks_descend_into_stacks() -> None:
    deep = nn.Sequential(*[nn.Linear(4, 4) for _ in range(24)])
    assert len(blocks(deep)) == 24
    gpt2 = tiny_gpt2(n_layer=4)
    names = {m: n for n, m in gpt2.named_modules()}
    found = [names[b] for b in blocks(gpt2)]
    assert [f"transformer.h.{i}" for i in range(4)] == [f for f in found if ".h." in f]
    assert "lm_head" in found and "transformer.wte" in found


def test_batchnorm_is_calibrated_on_a_copy() -> None:
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    x = 5 + torch.randn(32, 4, generator=torch.Generator().manual_seed(6))
    ctx = context(model, x, torch.zeros(32).long())
    copy = calibrated_copy(ctx, None, DEFAULTS.calibration_batches)
    with torch.no_grad():
        expected = model[0](x).mean(dim=0)
    assert torch.allclose(copy[1].running_mean, expected, atol=1e-5)
    assert not copy.training and torch.equal(model[1].running_mean, torch.zeros(8))


def test_recurrent_radius_per_gate_and_memory_horizon() -> None:
    lstm = nn.LSTM(4, 4)
    with torch.no_grad():
        lstm.weight_hh_l0.zero_()
        lstm.weight_hh_l0[8:12] = 0.7 * torch.eye(4)  # the cell-candidate gate
    (row,) = recurrent_radii(nn.Sequential(lstm))
    assert row["spectral_radius"] == pytest.approx(0.7)
    assert memory_horizon([1e-5, 1e-2, 0.5, 1.0], DEFAULTS.horizon_fraction) == 3
    assert memory_horizon([0.5, 0.9, 1.0], DEFAULTS.horizon_fraction) == 3


def jacobian_codes(target, **options) -> set[str]:
    report = nndiag.check(target, probes=["jacobian"], device="cpu", **options)
    result = report.result("jacobian")
    assert result.status.value == "ok", result.error
    return {f.code for f in result.findings}


@pytest.mark.parametrize(
    ("sample", "code"),
    [
        ("sick_exploding.py", "exploding-gradients"),
        ("sick_deep_sigmoid.py", "vanishing-gradients"),
        ("sick_linear_stack.py", "no-nonlinearity"),
        ("sick_rnn_exploding.py", "exploding-gradients"),
        ("sick_rnn_forgetful.py", "vanishing-gradients"),
        ("sick_ignores_input.py", "output-ignores-input"),
    ],
)
def test_sick_samples_fire_in_the_jacobian_probe(sample: str, code: str) -> None:
    assert code in jacobian_codes(str(SAMPLES / sample))


def test_healthy_lstm_and_residual_cnn_have_no_finding() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.layers = nn.ModuleList(
                nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
                for _ in range(6)
            )
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            h = self.stem(x)
            for layer in self.layers:
                h = h + layer(h)
            return self.head(h.mean(dim=(2, 3)))

    class LSTMClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(20, 16)
            self.lstm = nn.LSTM(16, 16, batch_first=True)
            self.head = nn.Linear(16, 4)

        def forward(self, tokens):
            return self.head(self.lstm(self.embed(tokens))[0][:, -1])

    g = torch.Generator().manual_seed(0)
    images = (torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g))
    tokens = (torch.randint(0, 20, (8, 24), generator=g), torch.randint(0, 4, (8,), generator=g))
    assert jacobian_codes(Residual(), batch=images) == set()
    assert jacobian_codes(LSTMClassifier(), batch=tokens) == set()


def test_recurrent_models_are_differentiated_without_cudnn() -> None:
    # cuDNN's RNN kernels refuse a backward in eval mode; the switch must be scoped and restored.
    before = torch.backends.cudnn.enabled
    with eval_mode_backward(nn.LSTM(4, 4)):
        assert not torch.backends.cudnn.enabled
    with eval_mode_backward(nn.Linear(4, 4)):
        assert torch.backends.cudnn.enabled == before
    assert torch.backends.cudnn.enabled == before


class CrossBlock(nn.Module):
    """A decoder block on its own stream `h`, reading the encoder's `memory` through a path
    scaled by `read` (cross-attention at init reads the encoder weakly)."""

    def __init__(self, read: float) -> None:
        super().__init__()
        self.mix, self.cross, self.read = nn.Linear(16, 16), nn.Linear(16, 16), read

    def forward(self, h: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        return h + torch.tanh(self.mix(h)) + self.read * self.cross(memory)


class EncoderDecoder(nn.Module):
    def __init__(self, encoder: list[nn.Module], read: float) -> None:
        super().__init__()
        self.encoder = nn.ModuleList(encoder)
        self.queries = nn.Parameter(torch.randn(16))  # the decoder's stream: not from x
        self.decoder = nn.ModuleList(CrossBlock(read) for _ in range(2))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        memory = x
        for layer in self.encoder:
            memory = layer(memory)
        h = self.queries.expand(x.shape[0], -1)
        for block in self.decoder:
            h = block(h, memory)
        return self.head(h)


def test_a_stream_that_joins_is_no_step_of_depth() -> None:
    """The gradient reaching an encoder through a weak cross path is far below the decoder's
    own, which is no vanishing through depth: the step into the first decoder block (its main
    input does not depend on x) is left out of the total gain, which is then the product of the
    gains within the streams. A deep sigmoid encoder still vanishes within its own stream."""
    torch.manual_seed(0)
    batch = (torch.randn(16, 16), torch.randint(0, 4, (16,)))
    healthy = EncoderDecoder([nn.Sequential(nn.Linear(16, 16), nn.Tanh()) for _ in range(3)], 1e-4)
    report = nndiag.check(healthy, batch=batch, probes=["jacobian"], device="cpu")
    result = report.result("jacobian")
    rows = result.table("blocks").rows
    assert [r["block"] for r in rows if r["joins"]] == ["decoder.0"]
    within = math.prod(r["gain"] for r in rows if math.isfinite(r["gain"]))
    assert result.metrics["total_gain"] == pytest.approx(within, rel=1e-6)
    unstitched = rows[0]["grad_norm"] / rows[-1]["grad_norm"]
    assert unstitched < DEFAULTS.gain_vanish < result.metrics["total_gain"]
    assert {f.code for f in result.findings} == set()

    sigmoid = [nn.Sequential(nn.Linear(16, 16), nn.Sigmoid()) for _ in range(12)]
    assert "vanishing-gradients" in jacobian_codes(EncoderDecoder(sigmoid, 1.0), batch=batch)


class MaskedSigmoid(nn.Module):
    """A block called as block(mask, h): the mask comes first, the stream is h."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(16, 16)

    def forward(self, mask: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.linear(h)) * mask


class MaskedStack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MaskedSigmoid() for _ in range(12))
        self.head = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.ones(x.shape[0], 1)  # a float input that does not depend on x
        for layer in self.layers:
            x = layer(mask, x)
        return self.head(x)


def test_a_mask_passed_before_the_stream_is_no_join() -> None:
    """The main input is the one shaped like the block's output: a mask given first does not
    make every block a join (which would leave no step of depth to judge)."""
    torch.manual_seed(0)
    batch = (torch.randn(16, 16), torch.randint(0, 4, (16,)))
    report = nndiag.check(MaskedStack(), batch=batch, probes=["jacobian"], device="cpu")
    result = report.result("jacobian")
    assert not any(r["joins"] for r in result.table("blocks").rows)
    assert "vanishing-gradients" in {f.code for f in result.findings}
