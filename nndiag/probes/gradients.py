"""gradients: one forward and backward at init; per-parameter and per-module gradient health.

Rows follow forward execution order (modules the forward never called come last). Per parameter:
‖g‖, ‖W‖, the ratio ‖g‖/‖W‖ and the SGD update ratio lr·‖g‖/‖W‖ at the reference LR (cs231n:
updates of about 1e-3 of the weights are healthy). For weight matrices of Linear/Conv-like layers:
the init gain std(W)·sqrt(fan_in) and the measured signal gain rms(W·x)/rms(x) on the batch.

Verdicts (docs/probes/gradients.md):
- `no-gradient`: a trainable parameter outside the loss's graph (gradient None), or one whose
  gradient is exactly zero at init *and still zero* on a copy a few optimizer steps into
  training. Zero at init but flowing after the steps is a gate by design: `gated-at-init`, info.
- `vanishing-gradients` / `exploding-gradients`: the depth trend of ‖g‖/‖W‖ from the first
  quarter of the weight matrices to the last (AutoTrainer's rule), never one parameter's ratio.
- `init-scale`: the init gain is outside its band *and* the measured signal gain shows the effect,
  the layer does not feed a normalisation layer (which would undo any scale), and its weights do
  not follow a documented fan-out convention (torchvision's ResNets, timm's EfficientNet and
  MobileNet: nndiag.core.inits).
- `frozen-parameters`: every parameter frozen (error); frozen tensors that still look freshly
  initialised (a checkpoint not loaded?) (warning); trained-looking frozen weights under trainable
  ones: a fine-tuning set-up (info).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nndiag.findings import Code, Finding, Severity, finding
from nndiag.probes.base import Presentation, ProbeSpec, setting
from nndiag.report import Highlight, Plot, Row, Table

if TYPE_CHECKING:
    from torch import Tensor, nn

    from nndiag.core.context import Context
    from nndiag.core.hooks import Call, Calls

NAME = "gradients"


@dataclass(frozen=True)
class Config:
    vanish_first_over_last: float = setting(
        1e-3,
        "vanishing when the best-fed first-quarter matrix's ‖g‖/‖W‖ is below this fraction of the "
        "median of the last quarter of the hidden blocks (an output layer left out)",
        source="AutoTrainer (Zhang et al., ICSE 2021); tiny BERTs with 2-6 layers score 7e-3..1",
        low=0.0,
    )
    explode_first_over_last: float = setting(
        70.0,
        "exploding when the first quarter's median ‖g‖/‖W‖ exceeds this multiple of the best-fed "
        "last-quarter matrix's",
        source="AutoTrainer (Zhang et al., ICSE 2021)",
        low=1.0,
    )
    min_profile_layers: int = setting(
        4, "weight matrices needed for a depth profile", source="one per quarter", low=2
    )
    init_gain_min: float = setting(
        0.02,
        "std(W)·sqrt(fan_in) below this is a suspiciously small init",
        source="GPT-2 scales residual projections to 0.02/√(2·n_layer): 0.054 for 2 layers of "
        "width 32; below 0.02 a layer shrinks its signal ~50x more than He",
        low=0.0,
    )
    init_gain_max: float = setting(
        3.0,
        "std(W)·sqrt(fan_in) above this is a suspiciously large init",
        source="≈ 2x He (√2); an unscaled randn gives sqrt(fan_in), 16 for fan_in 256",
        low=0.0,
    )
    signal_gain_min: float = setting(
        0.05,
        "a measured rms(W·x)/rms(x) below this confirms a too-small init",
        source="20x shrinkage in one layer; healthy inits measure 0.3..2, GPT-2's projections 0.1",
        low=0.0,
    )
    signal_gain_max: float = setting(
        3.0,
        "a measured rms(W·x)/rms(x) above this confirms a too-large init",
        source="the init band's bound: for weights independent of their inputs the measured gain "
        "is std(W)·sqrt(fan_in); He gives √2 ≈ 1.4, 2.5x He 3.5, a randn init sqrt(fan_in)",
        low=0.0,
    )
    output_gain_max: float = setting(
        8.0,
        "the output layer's init gain and measured gain above this are a too-large init (the "
        "band's top, init_gain_max, judges the layers before it)",
        source="an output layer scales only the logits, whose confidence loss-at-init judges: "
        "timm's Inception-v3 head (std 0.1 at fan_in 2048: 4.5, measured 4.0, its published init) "
        "trains; a head 20x its default (11.5) or drawn by randn (16) starts overconfident",
        low=0.0,
    )
    reference_lr: float = setting(
        1e-3,
        "the LR of the update_ratio column, lr·‖g‖/‖W‖",
        source="Adam's default step size (Kingma & Ba 2015); cs231n's healthy ratio ≈ 1e-3",
        low=0.0,
    )
    gate_opening_min: float = setting(
        10.0,
        "a vanishing first/last ratio that grows at least this many times within the "
        "confirmation steps is a gate opening (LayerScale, zero-initialised branches), reported "
        "as gated-at-init",
        source="the jacobian probe's setting of the same name; gates move by orders of magnitude "
        "in 3 Adam steps, 16 sigmoid layers by less than 2x",
        low=1.0,
    )
    untrained_share_min: float = setting(
        0.5,
        "frozen-parameters is a warning when at least this share of the frozen tensors match a "
        "default initialisation",
        source="a majority vote over tensors: a loaded checkpoint matches none",
        low=0.0,
        high=1.0,
    )


@dataclass(frozen=True)
class Measurement:
    rows: tuple[Row, ...]
    loss: float
    # How each module that ran ran (qualified name, "" for the root); absent: never called.
    calls: Mapping[str, Call] = field(default_factory=dict)
    vanishing_after_steps: float | None = None  # the profile's ratios on the confirmation copy
    exploding_after_steps: float | None = None
    unreached: tuple[str, ...] = ()  # cut modules of which nothing reaches the loss (_unreached)


# ---- measuring -----------------------------------------------------------------------------------


def _is_affine(module: nn.Module, pname: str, param: Tensor) -> bool:
    """A weight matrix whose layer maps features linearly (Linear, ConvNd, HF Conv1D...)."""
    from torch import nn

    if pname != "weight" or param.dim() < 2:
        return False
    skip = (
        nn.Embedding,
        nn.EmbeddingBag,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.modules.batchnorm._NormBase,
    )
    return not isinstance(module, skip)


def _signal_hook(gains: dict[Any, tuple[float, float, float]]) -> Any:
    """mean((W·x)²), mean(x²) and mean((W·x + b)²) of a layer's first call: means of squares,
    so that ranks holding equal slices of the batch can average them."""
    import torch

    def hook(module: Any, args: Any, output: Any) -> None:
        if module in gains or not args or not isinstance(output, torch.Tensor):
            return
        x, y = args[0], output.detach().float()
        whole = float(y.pow(2).mean())
        bias = getattr(module, "bias", None)
        if isinstance(bias, torch.Tensor) and bias.numel() in (
            y.shape[-1],
            y.shape[1] if y.dim() > 1 else -1,
        ):
            shape = [1] * y.dim()
            shape[-1 if bias.numel() == y.shape[-1] else 1] = bias.numel()
            y = y - bias.detach().float().reshape(shape)
        square_in = float(x.detach().float().pow(2).mean()) if isinstance(x, torch.Tensor) else 0
        gains[module] = (float(y.pow(2).mean()), square_in, whole)

    return hook


def _variation_hook(gains: dict[Any, tuple[float, float, float]]) -> Any:
    """A block's first call: the mean squares of its output's and its input's variation across
    the batch (a constant output, a bias, carries no signal), in _signal_hook's layout."""
    import torch

    def hook(module: Any, args: Any, output: Any) -> None:
        first = output[0] if isinstance(output, (tuple, list)) and output else output
        if module in gains or not args or not isinstance(first, torch.Tensor):
            return
        x, y = args[0], first.detach().float()
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.shape[0] < 2:
            return
        x = x.detach().float()
        out = float((y - y.mean(dim=0)).pow(2).mean())
        gains[module] = (out, float((x - x.mean(dim=0)).pow(2).mean()), out)

    return hook


@dataclass
class _Pass:
    """One forward and backward of a copy, with what the hooks saw."""

    model: nn.Module
    loss: float
    order: list[nn.Module]  # modules by first return (leaves in data-flow order)
    entered: list[nn.Module]  # modules by first entry
    gains: dict[nn.Module, tuple[float, float]]  # rms(W·x)/rms(x), rms(W·x + b)/rms(x)
    calls: Calls  # how each module's first call ran (grad mode, graph), how parameters were read


def _forward_backward(ctx: Context) -> _Pass:
    """In train mode, as training runs (an eval-mode cache or running statistics must not
    decide what gets a gradient)."""
    from nndiag.core.contract import eval_mode_backward
    from nndiag.core.hooks import call_records, entry_order, execution_order, forward_hooks

    model = ctx.fresh_model().train()
    model.zero_grad(set_to_none=True)
    affine = [
        m
        for m in model.modules()
        if any(_is_affine(m, n, p) for n, p in m.named_parameters(recurse=False))
    ]
    squares: dict[nn.Module, tuple[float, float, float]] = {}
    hooks = forward_hooks({
        **dict.fromkeys(_blocks(model, affine), _variation_hook(squares)),
        **dict.fromkeys(affine, _signal_hook(squares)),
    })  # fmt: skip
    with eval_mode_backward(model):
        with (
            execution_order(model) as order,
            entry_order(model) as entered,
            hooks,
            call_records(model) as calls,
        ):
            loss = ctx.run_step(model).loss.reshape(())
        if loss.requires_grad:
            loss.backward()
    ctx.reduce.average_gradients(model)  # under DDP: the whole batch's gradient
    return _Pass(model, float(loss.detach()), order, entered, _gains(ctx, squares), calls)


def _blocks(model: nn.Module, affine: list[nn.Module]) -> list[nn.Module]:
    """The repeated blocks (_block) holding the affine layers, other than the layers themselves:
    their gain says whether the signal passes a layer that shrinks it (a residual skip)."""
    by_name = dict(model.named_modules())
    layers = set(affine)
    # A layer's block is its parameters' block: _block reads a parameter's path.
    found = {by_name.get(_block(f"{name}.weight")) for name, m in by_name.items() if m in layers}
    return [m for m in found if m is not None and m not in layers]


def _gains(
    ctx: Context, squares: dict[nn.Module, tuple[float, float, float]]
) -> dict[nn.Module, tuple[float, float]]:
    """rms(W·x)/rms(x) and rms(W·x + b)/rms(x) per layer, over the whole batch (one collective
    under torchrun)."""
    from nndiag.core.reduce import across

    sums = across(ctx.reduce.sum, list(squares.values()))  # ratios of sums: the world cancels
    return {
        module: (math.sqrt(out / into), math.sqrt(whole / into)) if into > 0 else NO_GAIN
        for module, (out, into, whole) in zip(squares, sums, strict=True)
    }


NO_GAIN = (math.nan, math.nan)


def measure(ctx: Context, config: Config) -> Measurement:
    from nndiag.core.reduce import any_true

    run = _forward_backward(ctx)
    rows = _rows(ctx, run)
    _confirm_zero_gradients(ctx, rows)
    profile = profile_metrics(rows, config)
    vanishing, exploding = profile.get("vanishing_ratio"), profile.get("exploding_ratio")
    after: dict[str, Any] = {}
    vanishes = vanishing is not None and vanishing < config.vanish_first_over_last
    explodes = exploding is not None and exploding > config.explode_first_over_last
    if (vanishes or explodes) and ctx.trainable:
        after = profile_metrics(_after_steps(ctx, rows), config)
    calls = _module_calls(run)
    suspects = [c for c in cuts(rows, calls) if c.how in ("after", "inside", "selects")]
    # Under torchrun each rank read its own pass (how outputs were used can differ with the
    # sharding hooks): the extra forward is a collective, so every rank runs it if any needs it.
    traced = any_true(ctx.reduce, bool(suspects))
    return Measurement(
        tuple(rows),
        run.loss,
        calls,
        after.get("vanishing_ratio"),
        after.get("exploding_ratio"),
        _unreached(ctx, suspects) if traced else (),
    )


def _rows(ctx: Context, run: _Pass) -> list[Row]:
    """One row per parameter tensor (tied weights once), in the order their modules returned:
    its norms and gains, how the pass read it, and, when frozen, the init it still matches."""
    from nndiag.core.hooks import module_names
    from nndiag.core.inits import fan_out_convention, untrained_signature
    from nndiag.distributed import local

    model = run.model
    names = module_names(model)
    by_name = dict(model.named_modules())
    qualified = {m: n for n, m in by_name.items()}
    position = {m: i for i, m in enumerate(run.order)}
    normed = _feeding_norm(run.entered, model)
    init_range = getattr(getattr(model, "config", None), "initializer_range", None)
    rows: list[Row] = []
    modules: list[nn.Module] = []
    seen: set[int] = set()
    for module in sorted(names, key=lambda m: position.get(m, len(run.order))):
        for pname, param in module.named_parameters(recurse=False):
            if id(param) in seen:  # tied weights (e.g. GPT-2's lm_head) are listed once
                continue
            seen.add(id(param))
            row = _param_row(names[module], module, pname, param)
            gains = run.gains.get(module, NO_GAIN) if row["in_profile"] else NO_GAIN
            row.update(
                qualname=f"{qualified[module]}.{pname}".lstrip("."),
                called=module in position,
                use=run.calls.parameter_use(param),
                signal_gain=gains[0],
                block_gain=_block_gain(run, by_name, f"{qualified[module]}.{pname}", module),
                output_gain=gains[1],
                feeds_norm=module in normed,
                init_match=""
                if param.requires_grad
                else untrained_signature(module, local(param), init_range),
            )
            rows.append(row)
            modules.append(module)
    _reduce_sums(ctx, rows)
    for row, module in zip(rows, modules, strict=True):
        shape = row.pop("global_shape")
        row["convention"] = (
            fan_out_convention(module, shape, row["std"]) if row["in_profile"] else ""
        )
    return rows


def _module_calls(run: _Pass) -> dict[str, Call]:
    """How the pass ran each module it called, by qualified name."""
    return {
        name: call
        for name, module in run.model.named_modules()
        if (call := run.calls.modules.get(module)) is not None
    }


def _block_gain(
    run: _Pass, by_name: dict[str, nn.Module], qualname: str, module: nn.Module
) -> float:
    """rms(output)/rms(input) of the repeated block holding the layer (NaN outside any)."""
    block = by_name.get(_block(qualname))
    return (
        run.gains.get(block, NO_GAIN)[0] if block is not None and block is not module else math.nan
    )


def _unreached(ctx: Context, suspects: list[Cut]) -> tuple[str, ...]:
    """Of the cuts that would cripple training, those where nothing reaches the loss in a
    forward: from the module's output, for an output some op read (a pooler read by its own
    tanh, then dropped); from its parameters, for a module whose output carries no graph (a
    window longer than the sequence: the output is a zeros tensor). A path cut by .detach() or
    no_grad still reaches the loss in the forward: that one is a real cut."""
    from nndiag.core.hooks import reach_from

    model = ctx.fresh_model().train()
    modules = dict(model.named_modules())
    outputs = [modules[c.module] for c in suspects if c.how == "after"]
    parameters = [modules[c.module] for c in suspects if c.how in ("inside", "selects")]
    with reach_from(outputs, parameters) as reach:
        loss = ctx.run_step(model).loss
    sources = reach.sources(loss)
    return tuple(c.module for c in suspects if id(modules[c.module]) not in sources)


def _after_steps(ctx: Context, rows: list[Row]) -> list[Row]:
    """The rows with ‖g‖/‖W‖ from the confirmation copy's last step (one collective for the
    sums under torchrun)."""
    from nndiag.core.reduce import across
    from nndiag.core.tensors import magnitude64
    from nndiag.core.training import after_steps
    from nndiag.distributed import local

    stepped = dict(after_steps(ctx).model.named_parameters(remove_duplicate=False))
    sums = []
    for row in rows:
        p = stepped.get(row["qualname"])
        grad = None if p is None else p.grad
        sums.append([
            float(magnitude64(local(grad)).pow(2).sum()) if grad is not None else 0.0,
            float(magnitude64(local(p)).pow(2).sum()) if p is not None else 0.0,
        ])  # fmt: skip
    totals = across(ctx.reduce.shard_sum, sums)
    return [
        dict(row, ratio=math.sqrt(g) / math.sqrt(w) if w > 0 and g > 0 else math.nan)
        for row, (g, w) in zip(rows, totals, strict=True)
    ]


def _feeding_norm(entered: list[nn.Module], model: nn.Module) -> set[nn.Module]:
    """Layers whose output the next module entered normalises (it undoes any scale): the first
    module entered after the layer that is not inside it."""
    from torch import nn

    def is_norm(m: nn.Module) -> bool:
        norms = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
        return isinstance(m, norms) or "norm" in type(m).__name__.lower()

    normed = set()
    for i, module in enumerate(entered):
        inside = set(module.modules())
        following = next((m for m in entered[i + 1 :] if m not in inside), None)
        if following is not None and is_norm(following):
            normed.add(module)
    return normed


def _param_row(module_name: str, module: nn.Module, pname: str, param: Tensor) -> Row:
    """A parameter's row, with the sums its statistics come from: under FSDP2 each rank holds a
    shard of the parameter and of its gradient, and _reduce_sums adds the ranks' sums up."""
    from nndiag.core.inits import fan_in
    from nndiag.core.tensors import magnitude64
    from nndiag.distributed import local

    grad = param.grad
    values = magnitude64(local(param))
    gradient = magnitude64(local(grad)) if grad is not None else None
    in_profile = _is_affine(module, pname, param)
    return {
        "parameter": f"{module_name}.{pname}",
        "module": module_name,
        "type": type(module).__name__,
        "shape": "x".join(map(str, param.shape)),  # the global shape (a DTensor's too)
        "global_shape": tuple(param.shape),
        "trainable": param.requires_grad,
        "has_grad": grad is not None,
        "fan_in": fan_in(module, param) if in_profile else 0,
        "numel": param.numel(),
        "in_profile": in_profile,
        "sums": [
            float(gradient.pow(2).sum()) if gradient is not None else math.nan,
            float(values.pow(2).sum()),
            float(values.sum()),
            float(values.numel()),
            float((gradient != 0).sum()) if gradient is not None else 0.0,
        ],
    }


def _reduce_sums(ctx: Context, rows: list[Row]) -> None:
    """One collective for every tensor's sums, then the columns derived from them."""
    from nndiag.core.reduce import across

    if ctx.reduce.world > 1:
        for row, sums in zip(
            rows, across(ctx.reduce.shard_sum, [r["sums"] for r in rows]), strict=True
        ):
            row["sums"] = sums
    for row in rows:
        grad_sq, weight_sq, total, count, nonzero = row.pop("sums")
        g, w = math.sqrt(grad_sq), math.sqrt(weight_sq)
        mean = total / count if count else 0.0
        var = max(0.0, (weight_sq - count * mean * mean) / (count - 1)) if count > 1 else math.nan
        row["grad_norm"], row["weight_norm"] = g, w
        row["ratio"] = g / w if w > 0 and row["has_grad"] else math.nan
        row["std"] = math.sqrt(var) if count > 1 else math.nan
        row["init_gain"] = row["std"] * math.sqrt(row["fan_in"]) if row["fan_in"] else math.nan
        row["zero_grad"] = row["trainable"] and nonzero == 0


def _confirm_zero_gradients(ctx: Context, rows: list[Row]) -> None:
    """For trainable tensors with no or an exactly zero gradient in this pass: did any step of
    the confirmation run give them a non-zero gradient or move them? (A zero gate moves on the
    first step; a layer that LayerDrop or stochastic depth skipped here runs in another step.)"""
    from nndiag.core.training import after_steps

    for row in rows:
        row["flows_after_steps"] = None
    zero = [r for r in rows if r["zero_grad"]]
    if not zero:
        return
    confirmation = after_steps(ctx)
    for row in zero:
        name = row["qualname"]
        row["flows_after_steps"] = name in confirmation.got_gradient or name in confirmation.moved


# ---- diagnosing ------------------------------------------------------------------------------------


def _block(parameter: str) -> str:
    """The repeated block a parameter belongs to: its path up to the first numbered component
    ('model.layers.3.attn.q_proj.weight' -> 'model.layers.3'); outside any, itself."""
    parts = parameter.split(".")
    numbered = next((i for i, p in enumerate(parts[:-1]) if p.isdigit()), None)
    return parameter if numbered is None else ".".join(parts[: numbered + 1])


def profile_metrics(rows: list[Row], config: Config) -> dict[str, Any]:
    """Depth profile over the weight matrices with a usable ratio, in forward order; weights that
    are zero-gated at init are left out (their ratio says nothing about depth). The first and
    last quarters are counted in blocks (a transformer layer, a residual block), not matrices:
    inside one attention block the query and key projections get a second-order gradient at init
    (near-uniform attention), far below the value projection's, and that is not depth."""
    from nndiag.core.stats import log10_slope

    layers = [r for r in rows if r["in_profile"] and r["trainable"] and r["ratio"] > 0]
    usable = all(math.isfinite(r["ratio"]) for r in layers)
    if len(layers) < config.min_profile_layers or not usable:
        return {"profile_layers": len(layers)}
    first, last, hidden = _quarters(layers)
    ratios = lambda part: [r["ratio"] for r in part]  # noqa: E731
    return {
        "profile_layers": len(layers),
        "vanishing_ratio": max(ratios(first)) / statistics.median(ratios(hidden)),
        "exploding_ratio": statistics.median(ratios(first)) / max(ratios(last)),
        "log10_slope_per_layer": log10_slope(ratios(layers)),
        "first_layers": [r["parameter"] for r in first],
        "last_layers": [r["parameter"] for r in hidden],
    }


def _quarters(layers: list[Row]) -> tuple[list[Row], list[Row], list[Row]]:
    """The matrices of the first and of the last quarter of the blocks, in forward order, and
    the last quarter of the hidden blocks: an output layer (a last block of one matrix, with at
    least two blocks before it) is left out of that one, its ‖g‖/‖W‖ being its init scale against
    the loss gradient, not depth (a BERT classifier gets ~300x the encoder's ratio; CCT's
    0.02-std head 180x its blocks' and 3000x its He-initialised stem's)."""
    of = [_block(r["parameter"]) for r in layers]
    blocks = list(dict.fromkeys(of))
    quarter = max(1, len(blocks) // 4)
    hidden = blocks[:-1] if of.count(blocks[-1]) == 1 and len(blocks) > 2 else blocks

    def in_blocks(chosen: list[str]) -> list[Row]:  # in forward order
        keep = set(chosen)
        return [r for r, b in zip(layers, of, strict=True) if b in keep]

    return in_blocks(blocks[:quarter]), in_blocks(blocks[-quarter:]), in_blocks(hidden[-quarter:])


def diagnose(m: Measurement, config: Config) -> list[Finding]:
    rows = list(m.rows)
    findings = _nonfinite(rows) + _reachability(m) + _frozen(rows, config)
    findings += _depth(profile_metrics(rows, config), m, config)
    findings += _init_scale(rows, config)
    return findings


def _nonfinite(rows: list[Row]) -> list[Finding]:
    bad = [r for r in rows if r["has_grad"] and not math.isfinite(r["grad_norm"])]
    if not bad:
        return []
    where = [r["parameter"] for r in bad]
    return [
        finding(
            Code.NONFINITE_VALUES,
            NAME,
            f"{len(bad)} parameter gradient(s) are NaN/Inf",
            where=where,
        )
    ]


def _dead(rows: list[Row]) -> list[Row]:
    """No gradient in the pass and none in any confirmation step, never moved."""
    return [r for r in rows if r["zero_grad"] and r["flows_after_steps"] is not True]


def _gated(rows: list[Row]) -> list[Row]:
    """Exactly zero in the pass's graph, flowing after a step: a zero gate by design. (Outside
    the graph in the pass and flowing later: skipped by chance, LayerDrop; nothing to say.)"""
    return [r for r in rows if r["zero_grad"] and r["has_grad"] and r["flows_after_steps"]]


@dataclass(frozen=True)
class Cut:
    """Where the gradient path stops: the outermost module whose every trainable parameter gets
    no gradient, and how (CUT_HOW)."""

    module: str  # qualified name, "" for the whole model
    how: str
    parameters: tuple[str, ...]


CUT_HOW = {
    "no_grad": "{m} runs with autograd off (torch.no_grad() or inference_mode around its call, or "
    "torch.utils.checkpoint with use_reentrant=True when none of its inputs requires grad)",
    "inside": "{m} cuts the graph in its own forward (.detach(), .data or no_grad inside)",
    "selects": "{m} returns only indices or masks (top-k, argmax, comparisons), through which no "
    "gradient passes: its parameters learn only from an auxiliary loss on them (a sparse-attention "
    "indexer's KL loss, a router's balance loss)",
    "detached": "{m}'s output is detached where it is used (.detach(), .data, .item())",
    "after": "{m}'s output is used, but the path from it to the loss is cut further on",
    "not called": "{m} is never called in forward",
    "dropped": "{m}'s output is computed and never used",
    "discarded": "{m}'s output does not depend on these parameters here (computed, then left "
    "out inside its forward: an empty slice, a window longer than the sequence)",
    "unused": "{m} never reads these parameters in its forward",
    "zero": "{m} gets an exactly zero gradient (its path to the loss is multiplied by zero, "
    "dead downstream or gated shut) and still does after a few training steps",
}
# Cuts where the parameters shape the output but cannot learn: training is crippled. The others
# leave parameters that do not affect the loss at all: they stay at their init, the rest trains
# (an unused pooler of a task head; DistributedDataParallel then needs find_unused_parameters).
CRIPPLING = frozenset({"no_grad", "inside", "detached", "after"})


def _ancestors(path: str) -> list[str]:
    """'a.b.c' -> ['a.b.c', 'a.b', 'a', ''] ('' is the whole model)."""
    parts = path.split(".") if path else []
    return [".".join(parts[:i]) for i in range(len(parts), -1, -1)]


def cuts(rows: list[Row], calls: Mapping[str, Call], unreached: tuple[str, ...] = ()) -> list[Cut]:
    """Group the parameters without gradient by the outermost module all of whose trainable
    parameters are without gradient: the place to look (a detached backbone, not its layers).
    `unreached` units are 'dropped' or 'discarded': nothing of them reaches the loss."""
    dead = {r["qualname"] for r in _dead(rows)}
    units = _units(dead, [r["qualname"] for r in rows if r["trainable"]])
    found = [Cut(unit, _how(unit, names, rows, _call_of(unit, calls), dead), tuple(names))
             for unit, names in units.items()]  # fmt: skip
    dropped = {"after": "dropped", "inside": "discarded", "selects": "discarded"}
    return [
        dataclasses.replace(c, how=dropped[c.how]) if c.module in unreached else c for c in found
    ]


def _units(dead: set[str], trainable: list[str]) -> dict[str, list[str]]:
    """Each dead parameter under the outermost module whose trainable parameters are all dead."""
    units: dict[str, list[str]] = {}
    for name in sorted(dead):
        unit = name.rpartition(".")[0]
        for ancestor in _ancestors(unit):
            under = [t for t in trainable if not ancestor or t.startswith(ancestor + ".")]
            if under and all(t in dead for t in under):
                unit = ancestor
        units.setdefault(unit, []).append(name)
    return units


def _how(unit: str, names: list[str], rows: list[Row], call: Call | None, dead: set[str]) -> str:
    """How the path is cut at `unit` (a key of CUT_HOW), from how the pass ran it."""
    mine = [r for r in rows if r["qualname"] in names]
    if any(r["has_grad"] for r in mine):
        return "zero"
    others = [r for r in rows if r["trainable"] and r["qualname"] not in dead]
    if any(not unit or r["qualname"].startswith(unit + ".") for r in others):
        # some parameters of a module that works otherwise: how each one was read
        uses = {r["use"] for r in mine}
        if uses == {"dropped"}:
            return "unused"
        return "detached" if uses <= {"detached", "dropped"} else "after"
    return _how_called(call)


def _call_of(unit: str, calls: Mapping[str, Call]) -> Call | None:
    """How `unit` ran; for a container that is never called itself (a ModuleList, a
    ModuleDict), how its outermost called members ran, the most crippling of them first (blocks
    in a ModuleList each run under a reentrant torch.utils.checkpoint, which runs them with
    autograd off: without an input that requires grad, nothing brings a gradient back)."""
    if unit in calls:
        return calls[unit]
    inside = [n for n in calls if n.startswith(unit + ".")]
    outermost = [n for n in inside if not any(n.startswith(o + ".") for o in inside)]
    order = {"no_grad": 0, "inside": 1, "detached": 2, "after": 3}
    ranked = sorted((order.get(_how_called(calls[n]), 9), n) for n in outermost)
    return calls[ranked[0][1]] if ranked else None


def _how_called(call: Call | None) -> str:
    """How a module none of whose parameters got a gradient ran in the pass (None: not called)."""
    if call is None:
        return "not called"
    if not call.grad_enabled:
        return "no_grad"
    if not call.output_requires_grad:
        return "selects" if call.discrete else "inside"
    return {"detached": "detached", "dropped": "dropped"}.get(call.output_use, "after")


def _reachability(m: Measurement) -> list[Finding]:
    rows = list(m.rows)
    dead, gated = _dead(rows), _gated(rows)
    findings = [_no_gradient(dead, cuts(rows, m.calls, m.unreached))] if dead else []
    if gated:
        findings.append(
            finding(
                Code.GATED_AT_INIT,
                NAME,
                f"{len(gated)} parameter tensor(s) get an exactly zero gradient at init and a "
                "non-zero one after a few training steps: a zero gate by design (ReZero, "
                "LayerScale, LoRA's B = 0, a zero output layer); gradients flow after the first step",
                where=sorted({r["module"] for r in gated}),
                evidence={"parameters": [r["parameter"] for r in gated]},
            )
        )
    return findings


# Parameters the root module holds itself (a CLS token, learned queries, a hypernetwork's input
# embedding): "the whole model's output" would point nowhere, so they are named.
OWN_HOW = {
    "after": "{m} (held by the model itself) is read, but the path from it to the loss is cut "
    "further on",
    "detached": "{m} (held by the model itself) is detached where it is used (.detach(), .data, "
    ".item())",
}


def _cut_text(c: Cut) -> str:
    if not c.module and c.how in OWN_HOW and all("." not in p for p in c.parameters):
        return OWN_HOW[c.how].format(m=", ".join(c.parameters))
    return CUT_HOW[c.how].format(m=c.module or "the whole model")


def _no_gradient(dead: list[Row], found: list[Cut]) -> Finding:
    """An error where a cut path crippled the loss; a warning where a module only selects (the
    loss depends on it, no gradient crosses: an auxiliary loss trains it); else info (nothing of
    it reaches the loss)."""
    places = "; ".join(_cut_text(c) + f" ({len(c.parameters)} tensor(s))" for c in found)
    crippling = any(c.how in CRIPPLING for c in found)
    selects = any(c.how == "selects" for c in found)
    message = (
        f"{len(dead)} trainable parameter tensor(s) get no gradient, at init or in any of a few "
        f"training steps: {places}"
    )
    evidence = {
        "parameters": [r["parameter"] for r in dead],
        "cuts": {c.module or "model": c.how for c in found},
    }
    where = [c.module or "model" for c in found]
    if crippling:
        return finding(Code.NO_GRADIENT, NAME, message, where=where, evidence=evidence)
    if selects:
        return finding(
            Code.NO_GRADIENT, NAME, message, where=where, evidence=evidence,
            severity=Severity.WARNING,
            hint="Add the auxiliary loss that trains the selecting module, or freeze it "
            "(requires_grad=False) if its init is meant to stay.",
        )  # fmt: skip
    return finding(
        Code.NO_GRADIENT, NAME, message + "; they do not affect the loss and stay at their init",
        where=where, evidence=evidence, severity=Severity.INFO,
        hint="Remove the unused modules, or use their output; under DistributedDataParallel "
        "pass find_unused_parameters=True.",
    )  # fmt: skip


def _frozen(rows: list[Row], config: Config) -> list[Finding]:
    frozen = [r for r in rows if not r["trainable"]]
    if not frozen:
        return []
    share = sum(r["numel"] for r in frozen) / max(1, sum(r["numel"] for r in rows))
    where = sorted({r["module"] for r in frozen})
    if len(frozen) == len(rows):
        return [
            finding(
                Code.FROZEN_PARAMETERS,
                NAME,
                "every parameter has requires_grad=False: nothing will train",
                where=where,
                evidence={"frozen_share": share},
                severity=Severity.ERROR,
            )
        ]
    untrained = [r for r in frozen if r["init_match"]]
    evidence = {
        "frozen_share": share,
        "untrained": {r["parameter"]: r["init_match"] for r in untrained},
    }
    if len(untrained) >= config.untrained_share_min * len(frozen):
        return [
            finding(
                Code.FROZEN_PARAMETERS,
                NAME,
                f"{share:.0%} of the parameters ({len(frozen)} tensors) have requires_grad=False, "
                f"and {len(untrained)} of those tensors still match a default initialisation "
                f"(e.g. {untrained[0]['parameter']}: {untrained[0]['init_match']}): frozen before "
                "a checkpoint was loaded?",
                where=where,
                evidence=evidence,
            )
        ]
    return [
        finding(
            Code.FROZEN_PARAMETERS,
            NAME,
            f"a fine-tuning set-up: {share:.0%} of the parameters ({len(frozen)} tensors) are "
            "frozen and look trained, the rest train",
            where=where,
            evidence=evidence,
            severity=Severity.INFO,
            hint="Nothing to do if you meant to fine-tune only the trainable part.",
        )
    ]


def _depth(metrics: dict[str, Any], m: Measurement, config: Config) -> list[Finding]:
    vanishing, exploding = metrics.get("vanishing_ratio"), metrics.get("exploding_ratio")
    if vanishing is not None and vanishing < config.vanish_first_over_last:
        return [_vanishing(vanishing, metrics, m.vanishing_after_steps, config)]
    if exploding is not None and exploding > config.explode_first_over_last:
        return [_exploding(exploding, metrics, m.exploding_after_steps, config)]
    return []


def _profile_evidence(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in ("first_layers", "last_layers")}


def _vanishing(
    vanishing: float, metrics: dict[str, Any], after: float | None, config: Config
) -> Finding:
    """vanishing-gradients, or gated-at-init when the ratio recovers past the bound (or grows
    gate_opening_min-fold) within the confirmation steps."""
    evidence = _profile_evidence(metrics)
    if (
        after is not None
        and math.isfinite(after)
        and (after >= config.vanish_first_over_last or after >= vanishing * config.gate_opening_min)
    ):
        return finding(
            Code.GATED_AT_INIT,
            NAME,
            f"toward the input the best-fed of the first layers gets ‖g‖/‖W‖ {vanishing:.2g}x "
            f"the last layers' median at init and {after:.2g}x after a few training steps: "
            "gates closed at init (LayerScale, zero-initialised branches) that open",
            where=metrics["first_layers"],
            evidence={**evidence, "vanishing_ratio_after_steps": after},
        )
    return finding(
        Code.VANISHING_GRADIENTS,
        NAME,
        f"toward the input: the best-fed of the first layers gets ‖g‖/‖W‖ {vanishing:.2g}x "
        f"the last layers' median (threshold {config.vanish_first_over_last:g}); slope "
        f"{metrics['log10_slope_per_layer']:.2g} decades per layer",
        where=metrics["first_layers"],
        evidence=evidence,
    )


def _exploding(
    exploding: float, metrics: dict[str, Any], later: float | None, config: Config
) -> Finding:
    """An error only when training confirms it: still exploding after a few steps; a slope
    that the confirmation steps flatten below the bound is an info (the model trains)."""
    confirmed = later is None or not math.isfinite(later) or later > config.explode_first_over_last
    return finding(
        Code.EXPLODING_GRADIENTS,
        NAME,
        f"toward the input: the first layers' median ‖g‖/‖W‖ is {exploding:.3g}x the "
        f"best-fed of the last layers (threshold {config.explode_first_over_last:g})"
        + (f", {later:.3g}x after a few training steps" if later is not None else "")
        + ("" if confirmed else ": it settles as training starts"),
        where=metrics["first_layers"],
        evidence={**_profile_evidence(metrics), "exploding_ratio_after_steps": later},
        severity=None if confirmed else Severity.INFO,
    )


def _output_layer(rows: list[Row]) -> str | None:
    """The last affine layer to run (modules used functionally, never called, sort after it)."""
    called = [r for r in rows if r["in_profile"] and r["weight_norm"] > 0 and r["called"]]
    return called[-1]["parameter"] if called else None


def _off_scale(rows: list[Row], config: Config) -> list[Row]:
    output_layer = _output_layer(rows)
    # Skipped: a layer normalised next, a documented fan-out convention, and (when small) the
    # output layer, where a small init is recommended; a large one has its own bound.
    judged = [
        r for r in rows
        if r["in_profile"] and r["weight_norm"] > 0
        and not (r["feeds_norm"] or r["convention"] or not math.isfinite(r["signal_gain"]))
    ]  # fmt: skip
    return [
        r for r in judged
        if _too_big(r, config, r["parameter"] == output_layer)
        or (_too_small(r, config) and r["parameter"] != output_layer)
    ]  # fmt: skip


def _too_big(r: Row, config: Config, output_layer: bool) -> bool:
    if output_layer:
        bound = config.output_gain_max
        return r["init_gain"] > bound and r["signal_gain"] > bound
    return r["init_gain"] > config.init_gain_max and r["signal_gain"] > config.signal_gain_max


def _too_small(r: Row, config: Config) -> bool:
    """Small by init and by measured gain, unless something carries the signal past it: its
    bias (gMLP's spatial gate: W ≈ 0, b = 1, the identity at init) or the block around it (a
    residual branch gated shut at init: timm's SwiGLU gate, std 1e-6 without bias)."""
    return (
        r["init_gain"] < config.init_gain_min
        and r["signal_gain"] < config.signal_gain_min
        and not r["output_gain"] >= config.signal_gain_min
        and not r["block_gain"] >= config.signal_gain_min
    )


def _init_scale(rows: list[Row], config: Config) -> list[Finding]:
    off = _off_scale(rows, config)
    if not off:
        return []
    worst = max(off, key=lambda r: abs(math.log(r["init_gain"])))
    band = f"outside [{config.init_gain_min}, {config.init_gain_max}]"
    if worst["parameter"] == _output_layer(rows):  # judged against its own bound
        band = f"above {config.output_gain_max}, the output layer's bound"
    return [
        finding(
            Code.INIT_SCALE,
            NAME,
            f"{len(off)} weight matrix(es) have an init gain std·sqrt(fan_in) off their band and "
            f"scale the signal accordingly (worst {worst['parameter']}: init gain "
            f"{worst['init_gain']:.3g}, {band}; measured rms(W·x)/rms(x) "
            f"{worst['signal_gain']:.3g})",
            where=[r["parameter"] for r in off],
            evidence={r["parameter"]: r["init_gain"] for r in off},
        )
    ]


# ---- presenting ------------------------------------------------------------------------------------

PARAMETER_COLUMNS = (
    "parameter", "shape", "trainable", "grad_norm", "weight_norm", "ratio", "update_ratio",
    "init_gain", "signal_gain",
)  # fmt: skip


def present(m: Measurement, config: Config) -> Presentation:
    rows = [dict(r, update_ratio=config.reference_lr * r["ratio"]) for r in m.rows]
    index = {r["parameter"]: i for i, r in enumerate(rows)}

    def marks(selected: list[Row], column: str, severity: Severity) -> list[Highlight]:
        return [Highlight(index[r["parameter"]], column, severity) for r in selected]

    highlights = marks(_dead(rows), "grad_norm", Severity.ERROR)
    highlights += marks([r for r in rows if not r["trainable"]], "trainable", Severity.WARNING)
    highlights += marks(_off_scale(rows, config), "init_gain", Severity.WARNING)
    metrics = {
        k: v
        for k, v in profile_metrics(rows, config).items()
        if k not in ("first_layers", "last_layers")
    }
    metrics["loss"] = m.loss
    ratio = metrics.get("vanishing_ratio")
    headline = (
        f"{len(rows)} tensors, first/last-quarter ‖g‖/‖W‖ {ratio:.2g} over "
        f"{metrics['profile_layers']} layers"
        if ratio is not None
        else f"{len(rows)} tensors, {metrics['profile_layers']} weight matrices (too few for a depth profile)"
    )
    headline += f", {len(_dead(rows))} without gradient"
    if _gated(rows):
        headline += f", {len(_gated(rows))} gated at init"
    profile = tuple(
        {"layer": i, "parameter": r["parameter"], "ratio": r["ratio"]}
        for i, r in enumerate(
            r for r in rows if r["in_profile"] and r["trainable"] and r["ratio"] > 0
        )
    )
    return Presentation(
        headline,
        metrics=metrics,
        tables=(
            Table(
                "depth",
                profile,
                plot=Plot(
                    "layer",
                    "ratio",
                    log_y=True,
                    x_label="Layer (input to output)",
                    y_label="‖g‖/‖W‖",
                    names="parameter",
                ),
                key="parameter",
                schema=("layer", "parameter", "ratio"),
            ),
            Table(
                "parameters",
                tuple(rows),
                tuple(highlights),
                display=PARAMETER_COLUMNS,
                key="parameter",
                watch=("grad_norm", "weight_norm", "ratio", "init_gain"),
            ),
            Table("modules", tuple(_module_rows(rows)), key="module"),
        ),
    )


def _module_rows(rows: list[Row]) -> list[Row]:
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        grouped.setdefault(row["module"], []).append(row)
    result = []
    for module, members in grouped.items():
        grad = math.sqrt(
            sum(
                r["grad_norm"] ** 2
                for r in members
                if r["has_grad"] and math.isfinite(r["grad_norm"])
            )
        )
        weight = math.sqrt(sum(r["weight_norm"] ** 2 for r in members))
        result.append(
            {
                "module": module,
                "type": members[0]["type"],
                "params": sum(r["numel"] for r in members),
                "grad_norm": grad,
                "weight_norm": weight,
                "ratio": grad / weight if weight > 0 else math.nan,
            }
        )
    return result


SPEC = ProbeSpec(
    name=NAME,
    raises=(
        Code.NONFINITE_VALUES,
        Code.NO_GRADIENT,
        Code.GATED_AT_INIT,
        Code.EXPLODING_GRADIENTS,
        Code.VANISHING_GRADIENTS,
        Code.INIT_SCALE,
        Code.FROZEN_PARAMETERS,
    ),
    sharded=True,
    summary="per-layer ‖g‖, ‖W‖, ratios, depth profile, init scale, no-gradient and frozen parameters",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    # Measured in plain training steps of the same model: ResNet-50 1.7, GPT-2 small 1.2
    # (benchmarks/real_size/run.py, default check, 2-core CPU, 2026-11-28); its confirmation
    # steps are the plan's timing steps.
    cost=lambda c: 1.7,
    quick=True,
    order=50,
)
