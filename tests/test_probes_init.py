"""Unit tests of the init probes on tiny seeded models, against independent computations."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models import class_batch, mlp
from probing import codes, run

# ---- data --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inputs", "flagged"),
    [
        (torch.randint(0, 256, (16, 3, 8, 8)).float(), True),  # raw pixels
        (torch.randint(0, 256, (16, 3, 8, 8)).float() / 255, False),  # scaled to [0, 1]
        (torch.randn(16, 3, 8, 8), False),  # standardised
        (torch.randn(16, 3, 8, 8) * 1e-4, True),  # vanishingly small
    ],
)
def test_input_scale(inputs: torch.Tensor, flagged: bool) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(192, 3))
    result = run("data", model, (inputs, torch.randint(0, 3, (16,))))
    assert ("input-scale" in codes(result)) is flagged
    row = result.table("tensors").rows[0]
    x = inputs.double()
    assert row["rms"] == pytest.approx(math.sqrt(x.mean() ** 2 + x.std() ** 2))


def test_token_ids_are_never_scale_checked() -> None:
    model = nn.Sequential(nn.Embedding(1000, 4), nn.Flatten(), nn.Linear(32, 1000))
    result = run("data", model, (torch.randint(0, 1000, (16, 8)), torch.randint(0, 1000, (16,))))
    assert codes(result) == set()


def test_degenerate_and_histogram() -> None:
    x = torch.randn(16, 8)
    one_class = run("data", mlp(), (x, torch.full((16,), 2)))
    assert "degenerate-targets" in codes(one_class)
    assert one_class.table("classes").rows == ({"class": 2, "count": 16, "fraction": 1.0},)
    balanced = run("data", mlp(), (x, torch.arange(16) % 4))
    assert codes(balanced) == set()
    constant = run("data", nn.Linear(8, 1), (x, torch.full((16, 1), 3.0)))
    assert "degenerate-targets" in codes(constant)
    nan_inputs = x.clone()
    nan_inputs[0, 0] = math.nan
    assert "nonfinite-values" in codes(
        run("data", nn.Linear(8, 1), (nan_inputs, torch.randn(16, 1)))
    )


# ---- init-loss ---------------------------------------------------------------------------------


def test_init_loss_matches_cross_entropy_and_ln_c() -> None:
    model, batch = mlp(), class_batch()
    result = run("init-loss", model, batch)
    with torch.no_grad():
        expected = F.cross_entropy(model(batch[0]), batch[1]).item()
    row = result.table("loss").rows[0]
    assert row["loss"] == pytest.approx(expected, rel=1e-6)
    assert row["baseline"] == pytest.approx(math.log(4))
    assert codes(result) == set()


def test_overconfident_logits_trigger_loss_at_init() -> None:
    model = mlp()
    with torch.no_grad():
        model[-1].weight.mul_(50)
    assert "loss-at-init" in codes(run("init-loss", model, class_batch()))


def softmax_mlp() -> nn.Module:
    return nn.Sequential(mlp(), nn.Softmax(dim=-1))


@pytest.mark.parametrize(
    "loss_fn",
    [
        None,
        lambda o, y: F.cross_entropy(o, y),
        nn.CrossEntropyLoss(),
        lambda o, y: F.nll_loss(F.log_softmax(o, dim=-1), y),
    ],
    ids=["default", "F.cross_entropy", "CrossEntropyLoss", "log_softmax+nll"],
)
def test_double_softmax_is_seen_through_user_losses(loss_fn) -> None:
    assert "double-softmax" in codes(run("init-loss", softmax_mlp(), class_batch(), loss_fn))


def test_softmax_with_log_and_nll_is_correct() -> None:
    loss_fn = lambda o, y: F.nll_loss(torch.log(o), y)
    assert "double-softmax" not in codes(run("init-loss", softmax_mlp(), class_batch(), loss_fn))


def test_sigmoid_into_bce_with_logits() -> None:
    model = nn.Sequential(nn.Linear(8, 1), nn.Sigmoid())
    batch = (torch.randn(16, 8), torch.randint(0, 2, (16, 1)).float())
    loss_fn = nn.BCEWithLogitsLoss()
    assert "double-softmax" in codes(run("init-loss", model, batch, loss_fn))


def test_loss_broadcast_default_mse_and_manual() -> None:
    batch = (torch.randn(16, 8), torch.randn(16))
    assert "loss-broadcast" in codes(run("init-loss", nn.Linear(8, 1), batch))
    manual = lambda o, y: ((o - y) ** 2).mean()
    assert "loss-broadcast" in codes(run("init-loss", nn.Linear(8, 1), batch, manual))
    fine = (torch.randn(16, 8), torch.randn(16, 1))
    assert "loss-broadcast" not in codes(run("init-loss", nn.Linear(8, 1), fine, manual))


class Constant(nn.Module):
    def __init__(self, embed: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 4) if embed else None
        self.bias = nn.Parameter(torch.randn(4))

    def forward(self, x):
        if self.embed is not None:
            self.embed(x)  # computed, then dropped
        return self.bias.expand(x.shape[0], 4)


@pytest.mark.parametrize("tokens", [False, True])
def test_output_ignores_input_for_float_and_integer_inputs(tokens: bool) -> None:
    x = torch.randint(0, 50, (16, 8)) if tokens else torch.randn(16, 8)
    result = run("init-loss", Constant(embed=tokens), (x, torch.randint(0, 4, (16,))))
    assert "output-ignores-input" in codes(result)
    assert "output-ignores-input" not in codes(run("init-loss", mlp(), class_batch()))


@pytest.mark.parametrize("seed", [0, 1])
def test_inputs_drawn_from_nndiags_own_seed_are_still_redrawn(seed: int) -> None:
    """Tokens a user drew after torch.manual_seed(0) (or 1) are what a generator seeded alike
    draws: the redraw must still differ, or every input looks ignored."""
    from nndiag.core.dependence import any_input_varies, redrawn

    torch.manual_seed(seed)
    tokens, floats = torch.randint(0, 50, (16, 8)), torch.randn(16, 8)
    for t in (tokens, floats):
        fresh = redrawn(t, torch.Generator().manual_seed(seed))
        assert not torch.equal(fresh, t) and fresh.dtype == t.dtype
    assert bool((redrawn(tokens, torch.Generator().manual_seed(seed)) != tokens).all())
    assert any_input_varies(tokens)
    torch.manual_seed(seed)
    x = torch.randint(0, 50, (16, 8))
    result = run("init-loss", Constant(embed=True), (x, torch.randint(0, 4, (16,))))
    assert "output-ignores-input" in codes(result)


def test_nonfinite_names_first_module() -> None:
    class Log(nn.Module):
        def forward(self, x):
            return torch.log(x)

    model = nn.Sequential(nn.Linear(8, 8), Log(), nn.Linear(8, 4))
    result = run("init-loss", model, class_batch())
    nonfinite = [f for f in result.findings if f.code == "nonfinite-values"]
    assert nonfinite and nonfinite[0].where[0] == "1"


# ---- gradients ---------------------------------------------------------------------------------


def test_gradient_norms_match_plain_autograd() -> None:
    model, batch = mlp(depth=4), class_batch()
    result = run("gradients", model, batch)
    reference = mlp(depth=4)
    reference.load_state_dict(model.state_dict())
    F.cross_entropy(reference(batch[0]), batch[1]).backward()
    rows = {r["parameter"]: r for r in result.table("parameters").rows}
    for name, p in reference.named_parameters():
        row = rows[name]
        assert row["grad_norm"] == pytest.approx(p.grad.norm().item(), rel=1e-5)
        assert row["weight_norm"] == pytest.approx(p.norm().item(), rel=1e-6)
        assert row["update_ratio"] == pytest.approx(1e-3 * row["grad_norm"] / row["weight_norm"])
    assert list(rows) == [n for n, _ in reference.named_parameters()]  # forward order
    assert codes(result) == set()


def test_no_gradient_names_detached_and_unused_modules() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used, self.detached, self.unused = (
                nn.Linear(8, 4),
                nn.Linear(8, 4),
                nn.Linear(8, 4),
            )

        def forward(self, x):
            return self.used(x) + self.detached(x).detach()

    result = run("gradients", Net(), class_batch())
    found = [f for f in result.findings if f.code == "no-gradient"]
    assert found and set(found[0].where) == {"detached", "unused"}
    assert "unused" in found[0].message  # named as never called


class Pooled(nn.Module):
    """A pooler whose output is read and then left out (`kind` says how), or whose path to the
    loss is really cut: only a cut on a path the loss depends on in the forward cripples it."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.body, self.pooler, self.head = nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x):
        h = self.body(x)
        pooled = self.pooler(h)
        if self.kind == "tanh then dropped":  # BERT's pooler on a task that does not use it
            torch.tanh(pooled)
        elif self.kind == "cut further on":
            h = h + (pooled * 2).detach()
        return self.head(h)


class SpareBranch(nn.Module):
    """A branch computed and never used whose output is a Linear's own output (transformers'
    CANINE computes a final character encoder that a classification loss never reads): the
    probe measuring that Linear's output is no use of it."""

    def __init__(self) -> None:
        super().__init__()
        self.body, self.spare, self.head = (
            nn.Linear(8, 8),
            nn.Sequential(nn.Linear(8, 8)),
            nn.Linear(8, 4),
        )

    def forward(self, x):
        h = self.body(x)
        self.spare(h)
        return self.head(h)


class Window(nn.Module):
    """Compresses windows of `rate` positions; shorter inputs give an empty (zeros) output, as
    DeepSeek-V4's compressor does on a sequence shorter than its window. `detach` cuts it."""

    def __init__(self, detach: bool) -> None:
        super().__init__()
        self.detach, self.proj = detach, nn.Linear(8, 8)

    def forward(self, x):
        kv = self.proj(x)
        if self.detach:
            return kv.detach()
        return kv.new_zeros(kv.shape)  # the input is shorter than a window


class Windowed(nn.Module):
    def __init__(self, detach: bool) -> None:
        super().__init__()
        self.window, self.head = Window(detach), nn.Linear(8, 4)

    def forward(self, x):
        return self.head(x + self.window(x))


class Indexer(nn.Module):
    """Scores keys and returns the top-k indices, as a sparse-attention indexer does."""

    def __init__(self) -> None:
        super().__init__()
        self.score = nn.Linear(8, 1)

    def forward(self, x):
        return self.score(x).squeeze(-1).topk(2, dim=-1).indices


class SparseSelect(nn.Module):
    """Features selected by an indexer: the loss depends on the selection, no gradient crosses
    it (DSA's indexer, trained by its own KL loss)."""

    def __init__(self) -> None:
        super().__init__()
        self.indexer, self.proj, self.head = Indexer(), nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x):
        tokens = self.proj(x.view(x.shape[0], 2, 4).repeat(1, 2, 2))  # (batch, 4 tokens, 8)
        picked = tokens.gather(1, self.indexer(tokens)[..., None].expand(-1, -1, 8))
        return self.head(picked.mean(1))


@pytest.mark.parametrize(
    ("model", "where", "how", "severity"),
    [
        (SparseSelect, "indexer", "selects", "warning"),
        (lambda: Pooled("tanh then dropped"), "pooler", "dropped", "info"),
        (SpareBranch, "spare", "dropped", "info"),
        (lambda: Pooled("cut further on"), "pooler", "after", "error"),
        (lambda: Windowed(False), "window", "discarded", "info"),
        (lambda: Windowed(True), "window", "inside", "error"),
    ],
)
def test_no_gradient_is_an_error_only_if_the_loss_depends_on_the_cut_path(
    model: Any, where: str, how: str, severity: str
) -> None:
    result = run("gradients", model(), class_batch())
    [found] = [f for f in result.findings if f.code == "no-gradient"]
    assert list(found.where) == [where] and found.severity.value == severity
    assert found.evidence["cuts"] == {where: how}


def test_parameters_the_model_holds_itself_are_named_where_their_path_is_cut() -> None:
    """A hypernetwork's input embedding z feeds a generator whose output is detached: the cut
    names `gen`, and z by name, not 'the whole model's output'."""

    class Hyper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.z = nn.Parameter(torch.randn(4))
            self.gen = nn.Linear(4, 8 * 4)
            self.head = nn.Linear(4, 4)

        def forward(self, x):
            w = self.gen(self.z).detach().view(4, 8)
            return self.head(F.linear(x, w))

    [found] = [f for f in run("gradients", Hyper(), class_batch()).findings
               if f.code == "no-gradient"]  # fmt: skip
    assert found.severity.value == "error"
    assert "z (held by the model itself) is read" in found.message
    assert "whole model" not in found.message


class Checkpointed(nn.Module):
    """Blocks in a ModuleList, each under torch.utils.checkpoint; `frozen_stem`: the blocks'
    input needs no grad, so a reentrant checkpoint gives them none (the known pitfall)."""

    def __init__(self, reentrant: bool, frozen_stem: bool = False) -> None:
        super().__init__()
        self.reentrant = reentrant
        self.stem = nn.Linear(8, 16).requires_grad_(not frozen_stem)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(16, 16), nn.Tanh()) for _ in range(2))
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        from torch.utils.checkpoint import checkpoint

        h = self.stem(x)
        for block in self.blocks:
            h = h + checkpoint(block, h, use_reentrant=self.reentrant)
        return self.head(h)


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")  # the pitfall's own
def test_a_reentrant_checkpoint_without_an_input_that_needs_grad_cuts_its_container() -> None:
    """The ModuleList is never called itself: the cut is named from how its blocks ran (autograd
    off inside the reentrant checkpoint), an error, not 'never called' (an info)."""
    result = run("gradients", Checkpointed(reentrant=True, frozen_stem=True), class_batch())
    [found] = [f for f in result.findings if f.code == "no-gradient"]
    assert list(found.where) == ["blocks"] and found.severity.value == "error"
    assert found.evidence["cuts"] == {"blocks": "no_grad"}
    assert "use_reentrant=True" in found.message
    healthy = run("gradients", Checkpointed(reentrant=True), class_batch())
    assert "no-gradient" not in codes(healthy)


@pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad")  # eval validation
@pytest.mark.parametrize("name", ["jacobian", "dependencies"])
def test_input_gradient_probes_see_through_reentrant_checkpoints(name: str) -> None:
    """torch.autograd.grad refuses a reentrant checkpoint ("incompatible with .grad()"); those
    probes run its function inline and measure what the plain model measures."""
    import torch.utils.checkpoint as checkpointing

    original = checkpointing.CheckpointFunction
    results = {}
    for reentrant in (True, False):
        torch.manual_seed(0)
        results[reentrant] = run(name, Checkpointed(reentrant), class_batch())
        assert results[reentrant].status.value == "ok", results[reentrant].error
    assert checkpointing.CheckpointFunction is original  # restored
    numbers = {k: v for k, v in results[False].metrics.items() if isinstance(v, float)}
    assert numbers and {k: results[True].metrics[k] for k in numbers} == pytest.approx(numbers)


def test_frozen_share() -> None:
    model = mlp()
    model[0].requires_grad_(False)
    found = [f for f in run("gradients", model, class_batch()).findings]
    frozen = [f for f in found if f.code == "frozen-parameters"]
    total = sum(p.numel() for p in model.parameters())
    assert frozen[0].evidence["frozen_share"] == pytest.approx(
        sum(p.numel() for p in model[0].parameters()) / total
    )


def test_init_gain_uses_fan_in_of_each_layout() -> None:
    from nndiag.core.inits import fan_in
    from nndiag.probes.gradients import _is_affine

    linear, conv = nn.Linear(20, 7), nn.Conv2d(3, 5, kernel_size=3)
    assert fan_in(linear, linear.weight) == 20
    assert fan_in(conv, conv.weight) == 27
    from transformers.pytorch_utils import Conv1D

    hf = Conv1D(nf=7, nx=20)  # weight stored as (in, out)
    assert fan_in(hf, hf.weight) == 20
    embedding = nn.Embedding(10, 4)
    assert not _is_affine(embedding, "weight", embedding.weight)


def test_raw_randn_init_is_flagged_and_default_is_not() -> None:
    model = mlp(width=256)
    assert "init-scale" not in codes(run("gradients", model, class_batch()))
    with torch.no_grad():
        model[2].weight.normal_(0, 1)
    result = run("gradients", model, class_batch())
    assert "init-scale" in codes(result)
    row = next(r for r in result.table("parameters").rows if r["parameter"] == "2.weight")
    assert row["init_gain"] == pytest.approx(model[2].weight.std().item() * 16, rel=1e-5)


class SpatialGate(nn.Module):
    """gMLP's spatial gating unit: u * (W v + b) with W near zero; b = 1 makes it the identity
    at init (Liu et al. 2021), b = 0 makes it shrink the signal a millionfold."""

    def __init__(self, bias: float) -> None:
        super().__init__()
        self.inp, self.gate, self.out = nn.Linear(8, 32), nn.Linear(16, 16), nn.Linear(16, 4)
        with torch.no_grad():
            self.gate.weight.normal_(0, 1e-6)
            self.gate.bias.fill_(bias)

    def forward(self, x):
        u, v = self.inp(x).chunk(2, dim=-1)
        return self.out(u * self.gate(v))


@pytest.mark.parametrize(("bias", "flagged"), [(1.0, False), (0.0, True)])
def test_a_gate_carried_by_its_bias_is_not_a_small_init(bias: float, flagged: bool) -> None:
    result = run("gradients", SpatialGate(bias), class_batch())
    assert ("init-scale" in codes(result)) is flagged


class GatedBlock(nn.Module):
    """timm's SwiGLU without bias: the gate weights drawn with std 1e-6, so the branch is ~0 at
    init; with `residual` the skip carries the signal past it (a branch gated shut, as in AIMv2),
    without it the block's output is ~0 (a layer that shrinks the signal a millionfold)."""

    def __init__(self, residual: bool) -> None:
        super().__init__()
        self.gate = nn.Linear(16, 32, bias=False)
        self.value = nn.Linear(16, 32, bias=False)
        self.proj = nn.Linear(32, 16)
        self.residual = residual
        with torch.no_grad():
            self.gate.weight.normal_(0, 1e-6)

    def forward(self, x):
        branch = self.proj(F.silu(self.gate(x)) * self.value(x))
        return x + branch if self.residual else branch


@pytest.mark.parametrize(("residual", "flagged"), [(True, False), (False, True)])
def test_a_branch_gated_shut_behind_a_skip_is_not_a_small_init(
    residual: bool, flagged: bool
) -> None:
    model = nn.Sequential(
        nn.Linear(8, 16), *(GatedBlock(residual) for _ in range(2)), nn.Linear(16, 4)
    )
    result = run("gradients", model, class_batch())
    assert ("init-scale" in codes(result)) is flagged


# ---- activations -------------------------------------------------------------------------------


class Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.a(x))
        h = F.relu_(h.clone())
        return self.b(F.gelu(h) + torch.tanh(h))


def test_functional_and_inplace_sites_are_observed() -> None:
    rows = run("activations", Functional(), class_batch()).table("sites").rows
    sites = {r["site"]: r for r in rows}
    assert set(sites) == {
        "Functional:relu",
        "Functional:relu_",
        "Functional:gelu",
        "Functional:tanh",
    }
    assert sites["Functional:relu"]["kind"] == "relu"


def test_dead_fraction_is_exact() -> None:
    model = nn.Sequential(nn.Linear(8, 100), nn.ReLU(), nn.Linear(100, 4))
    with torch.no_grad():
        model[0].bias[:70] = -100.0  # 70 of 100 units never fire: beyond chance (65)
    result = run("activations", model, class_batch())
    assert result.table("sites").rows[0]["dead_fraction"] == pytest.approx(0.7)
    assert "dead-units" in codes(result)


def test_conv_units_are_channels() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    with torch.no_grad():
        model[0].bias[:] = torch.tensor([-100.0, 0, 0, 0])
    batch = (torch.randn(16, 3, 6, 6), torch.randint(0, 2, (16,)))
    model(batch[0])  # materialise the lazy layer
    row = run("activations", model, batch).table("sites").rows[0]
    assert row["units"] == 4 and row["dead_fraction"] == pytest.approx(0.25)


class _Router(nn.Module):
    """Llama 4's router: the experts not picked score -inf, so their sigmoid gate is exactly 0."""

    def __init__(self, blocked: float) -> None:
        super().__init__()
        self.score = nn.Linear(8, 4)
        self.head = nn.Linear(8, 4)
        self.blocked = blocked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.score(x)  # (N, 4 experts)
        top = logits.topk(1, dim=-1)
        scores = torch.full_like(logits, self.blocked).scatter(1, top.indices, top.values)
        return self.head(x) * torch.sigmoid(scores)


@pytest.mark.parametrize(("blocked", "fires"), [(-math.inf, False), (-30.0, True)])
def test_sigmoid_of_minus_infinity_is_a_mask_not_saturation(blocked: float, fires: bool) -> None:
    row = run("activations", _Router(blocked), class_batch()).table("sites").rows[0]
    assert (row["saturated_fraction"] > 0.5) is fires


def test_saturation_and_gelu_internals() -> None:
    tanh = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4))
    with torch.no_grad():
        tanh[0].weight.mul_(100)
    assert "saturated-units" in codes(run("activations", tanh, class_batch()))

    from transformers.activations import NewGELUActivation

    gelu = nn.Sequential(nn.Linear(8, 32), NewGELUActivation(), nn.Linear(32, 4))
    rows = run("activations", gelu, class_batch()).table("sites").rows
    assert [r["site"] for r in rows] == ["1"]  # the tanh inside GELU is not its own site


class _Noisy(nn.Module):
    """Randomness left on in eval mode: a sampled latent (`sample`) or dropout (`dropout`)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.encode, self.decode, self.kind = nn.Linear(8, 8), nn.Linear(8, 4), kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encode(x)
        # pytorch/examples' VAE samples in eval mode too; the dropout ignores self.training
        noisy = h + torch.randn_like(h) * 0.5 if self.kind == "sample" else F.dropout(h, 0.5, True)
        tokens = noisy[:, None]  # attention without dropout: its kernel is tagged, draws nothing
        return self.decode(F.scaled_dot_product_attention(tokens, tokens, tokens)[:, 0])


class _Stateful(nn.Module):
    """Outputs that depend on earlier calls: a recurrent state carried in a plain attribute
    (truncated BPTT), a buffer updated in eval mode, or a plain counter."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind, self.body = kind, nn.Linear(8, 4)
        self.register_buffer("running", torch.zeros(4))
        self.state: torch.Tensor | None = None
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.kind == "carried":
            out = out + (0 if self.state is None else self.state)
            self.state = out.mean(0).detach()
        elif self.kind == "buffer":
            out = out + self.running
            self.running.add_(out.detach().mean(0))  # updated whatever the mode
        else:
            self.calls += 1
            out = out * self.calls
        return out


@pytest.mark.parametrize(
    ("kind", "severity", "named"),
    [
        ("carried", "info", "state"),
        ("buffer", "warning", "running"),
        ("counter", "warning", "a counter"),
    ],
)
def test_state_kept_between_calls_is_no_error(kind: str, severity: str, named: str) -> None:
    """Training works; only the order of calls matters. A tensor state carried in an attribute
    is by design in truncated BPTT (an info); a buffer updated in eval mode, or state nndiag
    cannot find, is a warning."""
    result = run("structure", _Stateful(kind), class_batch())
    (found,) = [f for f in result.findings if f.code == "nondeterministic-forward"]
    assert found.severity.value == severity
    assert named in found.message and found.evidence["rng_driven"] is False


@pytest.mark.parametrize(("kind", "severity"), [("sample", "info"), ("dropout", "error")])
def test_gaussian_sampling_in_eval_is_by_design_but_dropout_is_a_bug(
    kind: str, severity: str
) -> None:
    """Both make two eval forwards differ; the RNG ops they draw tell a sampled latent (randn:
    a VAE, training unaffected) from dropout left on in eval (bernoulli_)."""
    result = run("structure", _Noisy(kind), class_batch())
    (found,) = [f for f in result.findings if f.code == "nondeterministic-forward"]
    assert found.severity.value == severity
    assert found.evidence["random_ops"] == (["randn_like"] if kind == "sample" else ["bernoulli_"])
