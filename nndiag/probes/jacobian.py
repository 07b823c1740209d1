"""jacobian: signal propagation at init through the input-output Jacobian J = ∂f(x)/∂x.

Pennington, Schoenholz & Ganguli 2017 ("Resurrecting the sigmoid"); Schoenholz et al. 2017 ("Deep
information propagation"); Philipp, Song & Carbonell 2018 ("The exploding gradient problem
demystified"). A network trains well when J is close to an isometry: gradients neither grow nor
shrink exponentially from block to block, and no direction is amplified far beyond the others.

Measured on a copy in eval mode (dropout off) after BatchNorm running statistics are calibrated on
the batch, with all parameters frozen so that each backward pass computes only what J needs.

- Per-block profile (Hutchinson): one forward, then for k Gaussian cotangents v at the output,
  tensor hooks on every block's output catch δ_l = J_{l→L}ᵀ v. E‖δ_l‖² = ‖J_{l→L}‖_F², so
  g_l = sqrt(mean over k of ‖δ_l‖²) estimates ‖J_{l→L}‖_F, and gain_l = g_(l-1) / g_l is block
  l's backward gain χ_l. Total norms, not per-unit ones: for fan-in-scaled init E‖Wᵀδ‖² =
  fan_in·Var(W)·‖δ‖² does not depend on the layer's widths, so width changes are not mistaken
  for gain (per-unit norms put healthy CNNs and BERTs near the vanishing threshold).
- End to end: ‖J‖_F² / d = the mean squared singular value (d = min(d_in, d_out) per example);
  σ_max by Lanczos on JᵀJ (JVP by the double-backward trick, then VJP); isometry spread
  σ_max² / mean σ².
- Nonlinearity: ‖f(x̄) − (f(a) + f(b))/2‖ / ‖f(a) − f(b)‖ for x̄ = (a + b)/2; zero for affine f.
- Sequences: sensitivity of the output at the last step to the input at each step, the memory
  horizon, and the spectral radius of each recurrent weight matrix.

For integer (token) inputs, x is the first floating-point activation (the embedding output),
detached into a leaf by a forward hook. See docs/probes/jacobian.md.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nndiag.context import (
    Context,
    as_logits,
    call_model,
    eval_mode_backward,
    map_tensors,
    tensors_in,
)
from nndiag.findings import Code, Finding, Severity, finding
from nndiag.hooks import ForwardHook, forward_hooks, module_names
from nndiag.report import Highlight, ProbeResult, Row, Status, Table

NAME = "jacobian"

# Hutchinson probes: the relative standard error of ‖J‖_F² is at most sqrt(2/k), 0.71 for k = 4,
# and far smaller for wide layers (sqrt(2 Σσ⁴/k)/Σσ²); 4 keeps the probe at ~k+2 backward passes.
HUTCHINSON_PROBES = 4
# Lanczos on JᵀJ: stop when the largest Ritz value changes by less than 1e-3 relative, or after
# 30 products. Ritz values rise monotonically to λ_max; on the benchmark models this stops after
# 7 to 14 products within 0.4% of a reference converged to 1e-8 (1e-4 needed 13 to 18 products).
SPECTRAL_ITERATIONS = 30
SPECTRAL_TOLERANCE = 1e-3
# Batches used to calibrate BatchNorm running statistics (cumulative average) before eval mode.
CALIBRATION_BATCHES = 4
# Total backward gain g_x / g_output: above 1e3 or below 1e-3 the gradient changes by three
# orders of magnitude across the network, the same factor as AutoTrainer's vanishing threshold
# for gradients (docs/probes/gradients.md). Measured: healthy samples, tiny GPT-2/BERT with 2 and
# 6 layers and an LSTM give 0.013..4.1; 12 ReLU layers at 2.5x He scale 3e4; 16 sigmoid layers
# 2e-14; 12 ReLU layers at PyTorch's default init 1e-5 (1/√3 per Linear, 1/√2 per ReLU).
GAIN_EXPLODE = 1e3
GAIN_VANISH = 1e-3
# The profile needs this many blocks on the gradient path to speak of depth.
MIN_PROFILE_BLOCKS = 3
# f(midpoint) deviates from the midpoint of f by less than 1e-4 of the output change: affine within
# float32 precision (six stacked Linear layers give ~1e-7; one ReLU MLP ~1e-1, LayerNorm ~1e-2).
NONLINEARITY_MIN = 1e-4
# Memory horizon: steps back from the last until the sensitivity falls below 1e-3 of the last
# step's (issue 4). Temporal growth: the earliest steps more than 1e3 times as sensitive as the
# last means the recurrence amplifies exponentially (the same three decades as GAIN_EXPLODE).
# A recurrent model whose horizon is under a quarter of the sequence forgets too fast: an LSTM at
# default init keeps 14 of 32 steps (0.44); a tanh RNN with recurrent radius 0.3 about 6.
HORIZON_FRACTION = 1e-3
TEMPORAL_GROWTH_MAX = 1e3
SHORT_HORIZON_FRACTION = 0.25
# Sequences shorter than this say little about memory.
MIN_SEQUENCE = 8

Substitute = Callable[[Tensor], Tensor]
Advance = Callable[[int], None]  # moves the progress bar by n passes


def _unobserved(_passes: int) -> None:
    """The default progress callback: tests and benchmarks call the estimates without a bar."""


# ---- blocks ------------------------------------------------------------------------------------

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _holds_stack(module: nn.Module) -> bool:
    """A model or encoder that holds a stack of layers (GPT2Model.h, BertEncoder.layer)."""
    return any(
        isinstance(m, CONTAINERS) and len(m) >= 2 for m in module.modules() if m is not module
    )


def blocks(module: nn.Module) -> list[nn.Module]:
    """Top-level children, descending into containers and into modules that hold a stack."""
    found: list[nn.Module] = []
    for child in module.children():
        if isinstance(child, CONTAINERS) or _holds_stack(child):
            found += blocks(child)
        else:
            found.append(child)
    return found or [module]


def _first_float(output: Any) -> Tensor | None:
    return next((t for t in tensors_in(output) if t.is_floating_point()), None)


# ---- the function under study: f(x) with x the input or the first float activation -----------


@dataclass
class Surface:
    """f(x) for the model copy: x replaces the float input, or the embedding output for tokens."""

    model: nn.Module
    inputs: Any
    x0: Tensor  # the point of measurement, detached
    entry: nn.Module | None  # the block whose output x replaces (token inputs), else None

    def __call__(self, x: Tensor) -> Tensor:
        with eval_mode_backward(self.model):  # the copy is measured in eval mode
            if self.entry is None:
                swapped = _replace_first_float(self.inputs, x)
                return as_logits(call_model(self.model, swapped))
            hook = _substitute_output(x)
            with forward_hooks({self.entry: hook}):
                return as_logits(call_model(self.model, self.inputs))


def _replace_first_float(inputs: Any, x: Tensor) -> Any:
    done: list[bool] = []

    def swap(t: Tensor) -> Tensor:
        if t.is_floating_point() and not done:
            done.append(True)
            return x
        return t

    return map_tensors(swap, inputs)


def _substitute_output(x: Tensor) -> ForwardHook:
    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        return map_tensors(lambda t: x if t.is_floating_point() else t, output)

    return hook


def _surface(model: nn.Module, inputs: Any, order: list[nn.Module]) -> Surface:
    floats = [t for t in tensors_in(inputs) if t.is_floating_point()]
    if floats:
        return Surface(model, inputs, floats[0].detach(), None)
    outputs: dict[nn.Module, Tensor] = {}

    def keep(module: nn.Module, _inputs: Any, output: Any) -> None:
        first = _first_float(output)
        if first is not None and module not in outputs:
            outputs[module] = first.detach()

    with forward_hooks({b: keep for b in order}), torch.no_grad():
        call_model(model, inputs)
    entry = next((b for b in order if b in outputs), None)
    if entry is None:
        raise ValueError("no floating-point input or activation to differentiate against")
    return Surface(model, inputs, outputs[entry], entry)


# ---- model preparation -------------------------------------------------------------------------


def _calibrated_copy(ctx: Context) -> nn.Module:
    """Frozen copy in eval mode with BatchNorm statistics averaged over a few real batches."""
    model = ctx.fresh_model()
    batch_norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in batch_norms:
        if norm.track_running_stats:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the calibration batches
    if batch_norms:
        model.train()
        with torch.no_grad():
            call_model(model, ctx.inputs)
            for _ in range(CALIBRATION_BATCHES - 1):
                call_model(model, ctx.next_batch()[0])
    for module in model.modules():
        if hasattr(module, "inplace"):
            setattr(module, "inplace", False)  # noqa: B010  (in place would overwrite a block's output)
    return model.eval().requires_grad_(False)


def _execution_order(model: nn.Module, candidates: list[nn.Module], inputs: Any) -> list[nn.Module]:
    order: list[nn.Module] = []

    def record(module: nn.Module, _inputs: Any, _output: Any) -> None:
        if module not in order:
            order.append(module)

    with forward_hooks(dict.fromkeys(candidates, record)), torch.no_grad():
        call_model(model, inputs)
    return order


# ---- estimates ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    norms: dict[int, list[float]]  # block index (-1 = x) -> per-probe ‖δ_l‖
    frobenius_sq: list[float]  # per-probe ‖Jᵀv‖² at x: Hutchinson samples of ‖J‖_F²
    out_shape: torch.Size


def _catch(store: dict[int, Tensor], index: int) -> Callable[[Tensor], None]:
    def hook(grad: Tensor) -> None:
        # Only ‖δ_l‖ is kept: holding every δ_l until the pass ends would cost as much memory
        # as the activations again. A 0-d tensor, so CUDA does not sync inside the backward.
        store[index] = torch.linalg.vector_norm(grad.detach(), dtype=torch.float64)

    return hook


def _block_hooks(order: list[nn.Module], store: dict[int, Tensor], x: Tensor) -> ForwardHook:
    """A forward hook that puts a tensor hook on each block output that depends on x."""
    index = {m: i for i, m in enumerate(order)}

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        first = _first_float(output)
        if first is not None and first.requires_grad and first is not x:
            first.register_hook(_catch(store, index[module]))

    return hook


def hutchinson_profile(
    surface: Surface,
    order: list[nn.Module],
    probes: int,
    generator: torch.Generator,
    advance: Advance = _unobserved,
) -> Profile | None:
    """The per-block profile, or None when no gradient path connects x to the output."""
    x = surface.x0.clone().requires_grad_(True)
    store: dict[int, Tensor] = {}
    watched = [b for b in order if b is not surface.entry]
    with forward_hooks(dict.fromkeys(watched, _block_hooks(order, store, x))):
        out = surface(x)
    if not out.requires_grad:
        return None
    norms: dict[int, list[float]] = {}
    frobenius: list[float] = []
    for _ in range(probes):
        store.clear()
        v = torch.randn(out.shape, generator=generator).to(out.device, out.dtype)
        (dx,) = torch.autograd.grad(out, x, v, retain_graph=True, allow_unused=True)
        dx = torch.zeros_like(x) if dx is None else dx
        store[-1] = torch.linalg.vector_norm(dx, dtype=torch.float64)
        frobenius.append(float(store[-1]) ** 2)
        for i, norm in store.items():
            norms.setdefault(i, []).append(float(norm))
        advance(1)
    return Profile(norms, frobenius, out.shape)


def spectral_norm(
    surface: Surface,
    generator: torch.Generator,
    iterations: int | None = None,
    advance: Advance = _unobserved,
) -> tuple[float, int]:
    """σ_max(J) = sqrt(λ_max(JᵀJ)) by Lanczos on JᵀJ (Golub & Van Loan §10.1), with full
    reorthogonalisation. Each step costs one product JᵀJ q: Ju by the double-backward trick on the
    graph of one forward pass, then Jᵀ(Ju) by a backward pass. Lanczos needs far fewer products
    than power iteration for the same accuracy. Returns σ_max and the number of products.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    iterations = iterations or SPECTRAL_ITERATIONS
    x = surface.x0.clone().requires_grad_(True)
    with sdpa_kernel([SDPBackend.MATH]):  # the fused attention kernels have no double backward
        out = surface(x)
    v = torch.zeros_like(out, requires_grad=True)
    (vjp,) = torch.autograd.grad(out, x, v, create_graph=True)  # Jᵀv, linear in v

    # The basis is kept in the model's precision (at least float32), not float64: it holds one
    # vector of x's size per product, and the products themselves are only float32-accurate.
    dtype = torch.promote_types(x.dtype, torch.float32)

    def gram(q: Tensor) -> Tensor:  # JᵀJ q, flattened
        (ju,) = torch.autograd.grad(vjp, v, q.reshape(x.shape).to(x.dtype), retain_graph=True)
        (jtju,) = torch.autograd.grad(out, x, ju, retain_graph=True)
        return jtju.detach().to(dtype).flatten()

    q = torch.randn(x.numel(), generator=generator, dtype=torch.float64).to(x.device, dtype)
    basis = [q / q.norm()]
    alphas: list[float] = []
    betas: list[float] = []
    top = 0.0
    for _ in range(iterations):
        w = gram(basis[-1])
        advance(1)
        alphas.append(float(w @ basis[-1]))
        # Full reorthogonalisation, vector by vector and twice (Kahan-Parlett: "twice is
        # enough"), in place: stacking the basis would copy it, as large as x times the steps.
        for _ in range(2):
            for q in basis:
                w.sub_((q @ w) * q)  # no float(): on CUDA that would sync per vector
        tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
        previous, top = top, float(torch.linalg.eigvalsh(tridiagonal)[-1])
        beta = float(w.norm())
        if abs(top - previous) <= SPECTRAL_TOLERANCE * abs(top) or beta <= 1e-12 * abs(top):
            break  # converged, or the Krylov space is invariant: the Ritz value is exact
        betas.append(beta)
        basis.append(w / beta)
    return max(top, 0.0) ** 0.5, len(alphas)


def nonlinearity(surface: Surface, generator: torch.Generator) -> float:
    """Deviation of f at the midpoint of two inputs from the midpoint of f, relative to f's change.

    `a` is the batch itself; `b` the batch's examples in another order (same distribution).
    """
    a = surface.x0
    b = a[torch.randperm(a.shape[0], generator=generator).to(a.device)] if a.shape[0] > 1 else -a
    with torch.no_grad():
        fa, fb, fm = surface(a).double(), surface(b).double(), surface((a + b) / 2).double()
    change = float((fa - fb).norm())
    return float((fm - (fa + fb) / 2).norm()) / change if change > 0 else math.nan


# ---- sequences ---------------------------------------------------------------------------------


def recurrent_radii(model: nn.Module) -> list[Row]:
    """Spectral radius (largest |eigenvalue|) of each recurrent weight, per gate for LSTM/GRU."""
    rows: list[Row] = []
    names = module_names(model)
    for module in model.modules():
        if not isinstance(module, nn.RNNBase):
            continue
        gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
        for pname, weight in module.named_parameters():
            if not pname.startswith("weight_hh"):
                continue
            w = weight.detach().double()
            if w.shape[0] != gates * w.shape[1]:
                continue  # projected LSTM (proj_size): no square blocks
            radius = max(
                float(torch.linalg.eigvals(block).abs().max()) for block in w.chunk(gates, dim=0)
            )
            rows.append(
                {
                    "parameter": f"{names[module]}.{pname}",
                    "mode": module.mode,
                    "spectral_radius": radius,
                }
            )
    return rows


def _time_dim(model: nn.Module, surface: Surface, out_shape: torch.Size) -> int | None:
    """Time axis of x (B, T, F) for recurrent models and for outputs with one step per input step
    (language models). A sequence classifier without recurrence (BERT's pooled [CLS]) has no
    "last step", so it gets no temporal profile."""
    rnns = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    if surface.x0.dim() != 3:
        return None
    axis = 0 if rnns and not all(m.batch_first for m in rnns) else 1
    per_step = len(out_shape) >= 3 and out_shape[axis] == surface.x0.shape[axis]
    return axis if rnns or per_step else None


def temporal_sensitivity(
    surface: Surface, time_dim: int, generator: torch.Generator, advance: Advance = _unobserved
) -> list[float]:
    """‖∂ y_last / ∂ x_t‖ per step t relative to the last step's, averaged over probes."""
    x = surface.x0.clone().requires_grad_(True)
    out = surface(x)
    steps = x.shape[time_dim]
    # An output with the same time axis (a language model) is read at its last step.
    y = out.select(time_dim, -1) if out.dim() >= 3 and out.shape[time_dim] == steps else out
    total = torch.zeros(steps, dtype=torch.float64, device=x.device)
    for _ in range(HUTCHINSON_PROBES):
        v = torch.randn(y.shape, generator=generator).to(y.device, y.dtype)
        (dx,) = torch.autograd.grad(y, x, v, retain_graph=True, allow_unused=True)
        if dx is None:
            return [0.0] * steps
        other = tuple(d for d in range(dx.dim()) if d != time_dim)
        total += dx.double().pow(2).sum(dim=other)
        advance(1)
    norms = total.sqrt()
    last = float(norms[-1])
    return [float(n) / last if last > 0 else math.nan for n in norms]


def memory_horizon(sensitivity: list[float]) -> int:
    """Steps back from the last until the sensitivity falls below HORIZON_FRACTION."""
    for back, value in enumerate(reversed(sensitivity)):
        if value < HORIZON_FRACTION:
            return back
    return len(sensitivity)


# ---- the probe ---------------------------------------------------------------------------------


def probe(ctx: Context) -> ProbeResult:
    # Backward passes, at most: the profile's and the temporal profile's probes, Lanczos products.
    passes = 2 * HUTCHINSON_PROBES + SPECTRAL_ITERATIONS
    with ctx.progress.track("jacobian", passes) as advance:
        return _measure(ctx, advance)


def _measure(ctx: Context, advance: Advance) -> ProbeResult:
    model = _calibrated_copy(ctx)
    names = module_names(model)
    order = _execution_order(model, blocks(model), ctx.inputs)
    surface = _surface(model, ctx.inputs, order)
    generator = torch.Generator().manual_seed(ctx.options.seed)
    profile = hutchinson_profile(surface, order, HUTCHINSON_PROBES, generator, advance)
    if profile is None:
        return ProbeResult(
            NAME,
            Status.OK,
            metrics={"measured_from": _origin(surface, names), "frobenius_sq": 0.0},
            findings=(_ignores_input(surface, names),),
        )

    rows = _block_rows(profile, order, names)
    per_example = surface.x0.shape[0] if surface.x0.dim() > 1 else 1
    d = min(surface.x0.numel(), profile.out_shape.numel()) / per_example
    frob_sq = sum(profile.frobenius_sq) / len(profile.frobenius_sq)
    mean_sq_singular = frob_sq / per_example / d
    notes: list[str] = []
    try:
        sigma, products = spectral_norm(surface, generator, advance=advance)
    except RuntimeError as exc:  # an operator without double backward
        sigma, products = math.nan, 0
        notes.append(f"spectral norm not computed: {str(exc).splitlines()[0]}")
    norms = [r["grad_norm"] for r in rows if r["grad_norm"] > 0]
    total_gain = norms[0] / norms[-1] if len(norms) >= 2 else math.nan
    metrics: dict[str, Any] = {
        "measured_from": _origin(surface, names),
        "blocks": len(rows) - 1,
        "probes": HUTCHINSON_PROBES,
        "frobenius_sq": frob_sq,
        "frobenius_rel_stderr": _relative_stderr(profile.frobenius_sq),
        "mean_sq_singular": mean_sq_singular,
        "spectral_norm": sigma,
        "spectral_products": products,
        "isometry_spread": sigma**2 / mean_sq_singular if mean_sq_singular > 0 else math.nan,
        "total_gain": total_gain,
        "log10_gain_per_block": _slope(norms),
        "nonlinearity": nonlinearity(surface, generator),
    }
    tables = [Table("blocks", tuple(rows), tuple(_highlights(rows)))]
    time_dim = _time_dim(model, surface, profile.out_shape)
    if time_dim is not None and surface.x0.shape[time_dim] >= MIN_SEQUENCE:
        sensitivity = temporal_sensitivity(surface, time_dim, generator, advance)
        steps = len(sensitivity)
        tables.append(
            Table(
                "temporal",
                tuple(
                    {"step": t, "steps_back": steps - 1 - t, "sensitivity": s}
                    for t, s in enumerate(sensitivity)
                ),
            )
        )
        metrics["memory_horizon"] = memory_horizon(sensitivity)
        metrics["sequence_length"] = steps
        metrics["earliest_over_last"] = sensitivity[0]
        metrics["recurrent"] = any(isinstance(m, nn.RNNBase) for m in model.modules())
    radii = recurrent_radii(model)
    if radii:
        tables.append(Table("recurrent", tuple(radii)))
        metrics["max_recurrent_radius"] = max(r["spectral_radius"] for r in radii)
    return ProbeResult(
        NAME,
        Status.OK,
        metrics=metrics,
        tables=tuple(tables),
        findings=tuple(_diagnose(metrics, rows)),
        notes=tuple(notes),
    )


def _origin(surface: Surface, names: dict[nn.Module, str]) -> str:
    return "input" if surface.entry is None else f"{names[surface.entry]} output"


def _ignores_input(surface: Surface, names: dict[nn.Module, str]) -> Finding:
    return finding(
        Code.OUTPUT_IGNORES_INPUT,
        NAME,
        f"the Jacobian of the output with respect to the {_origin(surface, names)} is zero: "
        "no gradient path connects them",
    )


def _block_rows(profile: Profile, order: list[nn.Module], names: dict[nn.Module, str]) -> list[Row]:
    """Rows from the input (x) to the output block; gain_l = g_(l-1) / g_l."""
    rows: list[Row] = []
    for i in [-1, *range(len(order))]:
        samples = profile.norms.get(i)
        if samples is None:
            continue  # not downstream of x, or not on the path to the output
        norm = math.sqrt(sum(s * s for s in samples) / len(samples))
        spread = (max(samples) - min(samples)) / norm if norm > 0 else math.nan
        module = order[i] if i >= 0 else None
        rows.append(
            {
                "block": "x (input)" if module is None else names[module],
                "type": "" if module is None else type(module).__name__,
                "grad_norm": norm,
                "probe_spread": spread,
            }
        )
    for before, row in itertools.pairwise(rows):
        before["gain"] = (
            before["grad_norm"] / row["grad_norm"] if row["grad_norm"] > 0 else math.nan
        )
    if rows:
        rows[-1]["gain"] = math.nan  # the output block: no later block to compare with
    return rows


def _relative_stderr(samples: list[float]) -> float:
    mean = sum(samples) / len(samples)
    if len(samples) < 2 or mean == 0:
        return math.nan
    var = sum((s - mean) ** 2 for s in samples) / (len(samples) - 1)
    return math.sqrt(var / len(samples)) / mean


def _slope(values: list[float]) -> float:
    """Least-squares slope of log10(value) over position: decades per block, input to output."""
    if len(values) < 2:
        return math.nan
    xs = range(len(values))
    ys = [math.log10(v) for v in values]
    mx, my = sum(xs) / len(ys), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )


def _highlights(rows: list[Row]) -> list[Highlight]:
    return [
        Highlight(i, "gain", Severity.WARNING)
        for i, r in enumerate(rows)
        if math.isfinite(r.get("gain", math.nan))
        and not (GAIN_VANISH ** (1 / 4) <= r["gain"] <= GAIN_EXPLODE ** (1 / 4))
    ]


def _diagnose(metrics: dict[str, Any], rows: list[Row]) -> list[Finding]:
    findings: list[Finding] = []
    frob = metrics["frobenius_sq"]
    if frob == 0:
        findings.append(
            finding(
                Code.OUTPUT_IGNORES_INPUT,
                NAME,
                f"the Jacobian of the output with respect to {metrics['measured_from']} is exactly "
                f"zero ({HUTCHINSON_PROBES} random probes)",
            )
        )
        return findings
    if not math.isfinite(frob):
        findings.append(
            finding(
                Code.NONFINITE_VALUES,
                NAME,
                "the input-output Jacobian has NaN/Inf entries",
            )
        )
        return findings
    total = metrics["total_gain"]
    depth = len([r for r in rows if r["grad_norm"] > 0])
    evidence = {k: metrics[k] for k in ("total_gain", "log10_gain_per_block", "blocks")}
    if depth >= MIN_PROFILE_BLOCKS and total > GAIN_EXPLODE:
        findings.append(
            finding(
                Code.EXPLODING_GRADIENTS,
                NAME,
                f"the gradient grows {total:.3g}x from the output block back to the input over "
                f"{depth - 1} blocks ({metrics['log10_gain_per_block']:+.2g} decades per block; "
                f"threshold {GAIN_EXPLODE:g})",
                where=_worst_blocks(rows, high=True),
                evidence=evidence,
            )
        )
    elif depth >= MIN_PROFILE_BLOCKS and total < GAIN_VANISH:
        findings.append(
            finding(
                Code.VANISHING_GRADIENTS,
                NAME,
                f"the gradient shrinks to {total:.2g}x from the output block back to the input "
                f"over "
                f"{depth - 1} blocks ({metrics['log10_gain_per_block']:+.2g} decades per block; "
                f"threshold {GAIN_VANISH:g})",
                where=_worst_blocks(rows, high=False),
                evidence=evidence,
            )
        )
    score = metrics["nonlinearity"]
    if math.isfinite(score) and score < NONLINEARITY_MIN:
        findings.append(
            finding(
                Code.NO_NONLINEARITY,
                NAME,
                f"f((a+b)/2) equals (f(a)+f(b))/2 to {score:.2g} of the output change: the network "
                f"is an affine map of its input (threshold {NONLINEARITY_MIN:g})",
                evidence={"nonlinearity": score},
            )
        )
    findings += _diagnose_time(metrics)
    return findings


def _diagnose_time(metrics: dict[str, Any]) -> list[Finding]:
    if "memory_horizon" not in metrics:
        return []
    evidence = {
        k: metrics.get(k)
        for k in ("memory_horizon", "sequence_length", "earliest_over_last", "max_recurrent_radius")
    }
    radius = metrics.get("max_recurrent_radius")
    radius_text = f"; recurrent spectral radius {radius:.3g}" if radius is not None else ""
    growth, horizon, steps = (
        metrics["earliest_over_last"],
        metrics["memory_horizon"],
        metrics["sequence_length"],
    )
    if math.isfinite(growth) and growth > TEMPORAL_GROWTH_MAX:
        return [
            finding(
                Code.EXPLODING_GRADIENTS,
                NAME,
                f"the last output is {growth:.3g}x more sensitive to the first of {steps} steps "
                f"than to the last: the recurrence amplifies through time (threshold "
                f"{TEMPORAL_GROWTH_MAX:g}){radius_text}",
                evidence=evidence,
            )
        ]
    if metrics["recurrent"] and horizon < SHORT_HORIZON_FRACTION * steps:
        return [
            finding(
                Code.VANISHING_GRADIENTS,
                NAME,
                f"the last output forgets after {horizon} of {steps} steps: the sensitivity to "
                f"earlier steps falls below {HORIZON_FRACTION:g} of the last step's{radius_text}",
                evidence=evidence,
                hint="Initialise the LSTM forget-gate bias to 1, use a gated cell instead of a "
                "vanilla RNN, or keep the recurrent weights' spectral radius near 1.",
            )
        ]
    return []


def _worst_blocks(rows: list[Row], high: bool) -> list[str]:
    gains = [r for r in rows if math.isfinite(r.get("gain", math.nan))]
    ranked = sorted(gains, key=lambda r: r["gain"], reverse=high)
    return [r["block"] for r in ranked[:3]]
