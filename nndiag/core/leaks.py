"""Backprop dependency charts (Karpathy, "A Recipe for Training Neural Networks": use backprop to
chart dependencies). A cotangent on one part of the output (one example, or one position) and a
backward pass tell whether that part depends on other parts of the input: with no dependence
autograd gives exactly zero there, so the test compares against round-off, not a loose threshold
(a reshape without permute leaks ~6e-3 relative).

Where a dependence appears is a forward question: change the other parts of the input and find
the first module, in execution order, whose output at the part under test changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nndiag.core.hooks import forward_hooks, module_names
from nndiag.core.surface import Surface
from nndiag.core.tensors import first_float

# own(tensor) -> the elements of a module output that belong to the part under test, or None
# when the tensor's layout does not match (its leading dims are not (batch[, time])).
Own = Callable[[Tensor], Tensor | None]


def gradient_norms(
    s: Surface, cotangents: list[Tensor], parts: list[list[Tensor]]
) -> list[list[float]]:
    """One forward, one backward per cotangent v: ‖∂(vᵀout)/∂x‖ over each boolean mask of x in
    parts[k] (all zeros when the output does not depend on x)."""
    x = s.x0.clone().requires_grad_(True)
    out = s(x)
    norms = []
    for v, masks in zip(cotangents, parts, strict=True):
        grad = None
        if out.requires_grad:
            (grad,) = torch.autograd.grad(
                out, x, v.to(out.device, out.dtype), retain_graph=True, allow_unused=True
            )
        if grad is None:
            norms.append([0.0] * len(masks))
            continue
        g = grad.detach().double().pow(2)
        norms.append([float(g[mask].sum().sqrt()) for mask in masks])
    return norms


@dataclass(frozen=True)
class Place:
    """Where a difference first appears: a module ("" for the model's own forward, outside its
    submodules) and the module that holds it ("" at the top)."""

    module: str = ""
    parent: str = ""

    def __str__(self) -> str:
        if not self.module:
            return "the model's own forward, outside its submodules"
        return self.module + (f" (inside {self.parent})" if self.parent else "")


def _differ(a: Tensor, b: Tensor, rtol: float) -> bool:
    return float((a - b).abs().max()) > rtol * (float(a.abs().max()) + 1e-30)


def first_changed(
    model: nn.Module,
    forwards: tuple[Callable[[], Any], Callable[[], Any]],
    own: Own,
    rtol: float,
    skip: Any = None,
) -> Place:
    """The first module (execution order) whose output, at the part under test, differs between
    two forward passes (of inputs that differ only at other parts); `skip` is a module to ignore
    (the one a surface substitutes)."""
    names = module_names(model)
    parents = {child: names[m] for m in model.modules() for child in m.children()}

    def record(store: list[tuple[nn.Module, Tensor]]) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
            first = first_float(output)
            part = own(first) if first is not None and module is not skip else None
            if part is not None:  # a copy in its own dtype: a later in-place op cannot touch it
                store.append((module, part.detach().clone()))

        return hook

    runs: list[list[tuple[nn.Module, Tensor]]] = [[], []]
    with torch.no_grad():
        for forward, store in zip(forwards, runs, strict=True):
            with forward_hooks(dict.fromkeys(model.modules(), record(store))):
                forward()
    for (module, a), (_, b) in zip(*runs, strict=False):
        if a.shape == b.shape and _differ(a.double(), b.double(), rtol):
            return Place(names[module], parents.get(module, ""))
    return Place()
