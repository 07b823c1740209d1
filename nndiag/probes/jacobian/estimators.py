"""Estimates of the input-output Jacobian J = ∂f/∂x from products with random vectors.

- Hutchinson: for Gaussian v, E‖Jᵀv‖² = ‖J‖_F². Tensor hooks on each block output catch
  δ_l = J_{l→L}ᵀ v in the same backward pass, giving every block's ‖J_{l→L}‖_F at once.
- Lanczos on JᵀJ (Golub & Van Loan §10.1) for σ_max(J): each step one product JᵀJq, with J q by
  the double-backward trick (or, under FSDP2 where double backward is not available, by central
  finite differences of two forwards), then Jᵀ(Jq) by a backward pass.
- Nonlinearity: ‖f(x̄) − (f(a) + f(b))/2‖ / ‖f(a) − f(b)‖ for x̄ = (a + b)/2; zero for affine f.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nndiag.core.hooks import ForwardHook, forward_hooks
from nndiag.core.surface import Surface
from nndiag.core.tensors import first_float, tensors_in

Advance = Callable[[int], None]  # moves the progress bar by n passes


def unobserved(_passes: int) -> None:
    """The default progress callback: tests and benchmarks call the estimates without a bar."""


@dataclass(frozen=True)
class Profile:
    norms_sq: dict[int, list[float]]  # block index (-1 = x) -> per-probe ‖δ_l‖²
    frobenius_sq: list[float]  # per-probe ‖Jᵀv‖² at x: Hutchinson samples of ‖J‖_F²
    out_shape: torch.Size
    # Blocks whose main input does not depend on x: a second stream joins there (a decoder on
    # its own tokens, reading the encoder through cross-attention).
    joins: frozenset[int] = frozenset()


def _catch(store: dict[int, Tensor], index: int) -> Callable[[Tensor], None]:
    def hook(grad: Tensor) -> None:
        # Only ‖δ_l‖² is kept: holding every δ_l until the pass ends would cost as much memory
        # as the activations again. A 0-d tensor, so CUDA does not sync inside the backward.
        store[index] = torch.linalg.vector_norm(grad.detach(), dtype=torch.float64) ** 2

    return hook


def _block_hooks(
    order: list[nn.Module], store: dict[int, Tensor], x: Tensor, joins: set[int]
) -> ForwardHook:
    """A forward hook that puts a tensor hook on each block output that depends on x, and
    notes the blocks whose main input does not (the copy is frozen: requires_grad is exactly
    "depends on x")."""
    index = {m: i for i, m in enumerate(order)}

    def hook(module: nn.Module, inputs: Any, output: Any) -> None:
        first = first_float(output)
        if first is not None and first.requires_grad and first is not x:
            first.register_hook(_catch(store, index[module]))
            main = _main_input(inputs, first)
            if main is not None and not main.requires_grad:
                joins.add(index[module])

    return hook


def _main_input(inputs: Any, output: Tensor) -> Tensor | None:
    """The stream a block transforms: its first positional float input shaped like its output
    (the residual stream, not a mask passed before it), else its first float input."""
    floats = [t for t in tensors_in(inputs) if t.is_floating_point()]
    return next((t for t in floats if t.shape == output.shape), floats[0] if floats else None)


def hutchinson_profile(
    surface: Surface,
    order: list[nn.Module],
    probes: int,
    generator: torch.Generator,
    advance: Advance = unobserved,
) -> Profile | None:
    """The per-block profile, or None when no gradient path connects x to the output."""
    x = surface.x0.clone().requires_grad_(True)
    store: dict[int, Tensor] = {}
    joins: set[int] = set()
    watched = [b for b in order if b is not surface.entry]
    with forward_hooks(dict.fromkeys(watched, _block_hooks(order, store, x, joins))):
        out = surface(x)
    if not out.requires_grad:
        return None
    norms: dict[int, list[float]] = {}
    frobenius: list[float] = []
    for _ in range(probes):
        store.clear()
        v = torch.randn(out.shape, generator=generator).to(out.device, out.dtype)
        (dx,) = torch.autograd.grad(out, x, v, retain_graph=True, allow_unused=True)
        store[-1] = (
            torch.linalg.vector_norm(torch.zeros_like(x) if dx is None else dx, dtype=torch.float64)
            ** 2
        )
        frobenius.append(float(store[-1]))
        for i, norm_sq in store.items():
            norms.setdefault(i, []).append(float(norm_sq))
        advance(1)
    return Profile(norms, frobenius, out.shape, frozenset(joins))


def jacobian_is_zero(surface: Surface, generator: torch.Generator) -> bool:
    """One random vector-Jacobian product: is Jᵀv exactly zero (or x not in the graph)?"""
    x = surface.x0.clone().requires_grad_(True)
    out = surface(x)
    if not out.requires_grad:
        return True
    v = torch.randn(out.shape, generator=generator).to(out.device, out.dtype)
    (dx,) = torch.autograd.grad(out, x, v, allow_unused=True)
    return dx is None or not bool((dx != 0).any())


def spectral_norm(
    surface: Surface,
    generator: torch.Generator,
    iterations: int,
    tolerance: float,
    advance: Advance = unobserved,
) -> tuple[float, int]:
    """σ_max(J) = sqrt(λ_max(JᵀJ)) by Lanczos with full reorthogonalisation; returns σ_max and
    the number of products. Lanczos needs far fewer products than power iteration for the same
    accuracy; its Ritz values rise monotonically to λ_max."""
    x = surface.x0.clone().requires_grad_(True)
    out, jvp = _jvp_operator(surface, x)
    # The basis is kept in the model's precision (at least float32), not float64: it holds one
    # vector of x's size per product, and the products themselves are only float32-accurate.
    dtype = torch.promote_types(x.dtype, torch.float32)

    def gram(q: Tensor) -> Tensor:  # JᵀJ q, flattened
        ju = jvp(q.reshape(x.shape).to(x.dtype))
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
            for b in basis:
                w.sub_((b @ w) * b)  # no float(): on CUDA that would sync per vector
        previous, top = top, _largest_ritz_value(alphas, betas)
        beta = float(w.norm())
        if abs(top - previous) <= tolerance * abs(top) or beta <= 1e-12 * abs(top):
            break  # converged, or the Krylov space is invariant: the Ritz value is exact
        betas.append(beta)
        basis.append(w / beta)
    return max(top, 0.0) ** 0.5, len(alphas)


def _largest_ritz_value(alphas: list[float], betas: list[float]) -> float:
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    return float(torch.linalg.eigvalsh(tridiagonal)[-1])


def _jvp_operator(surface: Surface, x: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """f(x) with its graph, and u -> J u (the double-backward trick: Jᵀv is linear in v)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):  # the fused attention kernels have no double backward
        out = surface(x)
    v = torch.zeros_like(out, requires_grad=True)
    (vjp,) = torch.autograd.grad(out, x, v, create_graph=True)  # Jᵀv, linear in v

    def double_backward(u: Tensor) -> Tensor:
        (ju,) = torch.autograd.grad(vjp, v, u, retain_graph=True)
        return ju

    return out, double_backward


def nonlinearity(surface: Surface) -> tuple[float, float]:
    """‖f(x̄) − (f(a)+f(b))/2‖² and ‖f(a) − f(b)‖² (the score is the square root of their ratio).

    `a` is the batch itself; `b` the batch's examples shifted by one (same distribution, every
    example paired with another)."""
    a = surface.x0
    b = a.roll(1, dims=0) if a.shape[0] > 1 else -a
    with torch.no_grad():
        fa, fb, fm = surface(a).double(), surface(b).double(), surface((a + b) / 2).double()
    return float((fm - (fa + fb) / 2).pow(2).sum()), float((fa - fb).pow(2).sum())


def score(deviation_sq: float, change_sq: float) -> float:
    return math.sqrt(deviation_sq / change_sq) if change_sq > 0 else math.nan
