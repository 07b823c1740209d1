"""Memory through time: the sensitivity of the output at the last step to the input at each step
(a Hutchinson estimate per step), the memory horizon, and recurrent spectral radii."""

from __future__ import annotations

import math

import torch
from torch import nn

from nndiag.core.hooks import module_names
from nndiag.core.surface import Surface
from nndiag.core.tensors import magnitude64
from nndiag.probes.jacobian.estimators import Advance, unobserved
from nndiag.report import Row


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
            w = magnitude64(weight)
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


def time_dim(model: nn.Module, surface: Surface, out_shape: torch.Size) -> int | None:
    """Time axis of x (B, T, F) for recurrent models and for outputs with one step per input step
    (language models). A sequence classifier without recurrence (BERT's pooled [CLS]) has no
    "last step", so it gets no temporal profile."""
    rnns = [m for m in model.modules() if isinstance(m, nn.RNNBase)]
    if surface.x0.dim() != 3:
        return None
    axis = 0 if rnns and not all(m.batch_first for m in rnns) else 1
    per_step = len(out_shape) >= 3 and out_shape[axis] == surface.x0.shape[axis]
    return axis if rnns or per_step else None


def temporal_sensitivity_sq(
    surface: Surface,
    axis: int,
    probes: int,
    generator: torch.Generator,
    advance: Advance = unobserved,
) -> list[float]:
    """Sum over probes of ‖∂ y_lastᵀ v / ∂ x_t‖² per step t (reducible across ranks)."""
    x = surface.x0.clone().requires_grad_(True)
    out = surface(x)
    steps = x.shape[axis]
    # An output with the same time axis (a language model) is read at its last step.
    y = out.select(axis, -1) if out.dim() >= 3 and out.shape[axis] == steps else out
    total = torch.zeros(steps, dtype=torch.float64, device=x.device)
    for _ in range(probes):
        v = torch.randn(y.shape, generator=generator).to(y.device, y.dtype)
        (dx,) = torch.autograd.grad(y, x, v, retain_graph=True, allow_unused=True)
        if dx is None:
            return [0.0] * steps
        other = tuple(d for d in range(dx.dim()) if d != axis)
        total += dx.double().pow(2).sum(dim=other)
        advance(1)
    return total.cpu().tolist()


def relative_to_last(norms_sq: list[float]) -> list[float]:
    last = math.sqrt(norms_sq[-1]) if norms_sq else 0.0
    return [math.sqrt(n) / last if last > 0 else math.nan for n in norms_sq]


def memory_horizon(sensitivity: list[float], fraction: float) -> int:
    """Steps back from the last until the sensitivity falls below `fraction` of the last's."""
    for back, value in enumerate(reversed(sensitivity)):
        if value < fraction:
            return back
    return len(sensitivity)
