"""Activation sites: activation modules and functional activation calls, observed in one forward.

Sites are activation modules (nn.ReLU, nn.Tanh, Hugging Face's GELU classes, ...) and functional
calls (torch.relu, F.relu, torch.tanh, torch.sigmoid, F.gelu, F.silu, in-place variants), observed
with a TorchFunctionMode. Calls made inside an activation module belong to that module's site (so
the tanh inside the GELU approximation is not a tanh site). A unit is a channel (dim 1) for 4-D and
5-D outputs, otherwise the last dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

KIND_BY_FUNCTION = {
    "relu": "relu", "relu_": "relu", "relu6": "relu",
    "hardtanh": "tanh", "hardtanh_": "tanh", "tanh": "tanh", "tanh_": "tanh",
    "sigmoid": "sigmoid", "sigmoid_": "sigmoid", "hardsigmoid": "sigmoid",
    "gelu": "smooth", "silu": "smooth", "mish": "smooth", "elu": "smooth", "selu": "smooth",
    "celu": "smooth", "softplus": "smooth",
}  # fmt: skip
KIND_BY_MODULE: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu", nn.Tanh: "tanh", nn.Hardtanh: "tanh", nn.Sigmoid: "sigmoid",
    nn.Hardsigmoid: "sigmoid", nn.GELU: "smooth", nn.SiLU: "smooth", nn.Mish: "smooth",
    nn.ELU: "smooth", nn.SELU: "smooth", nn.CELU: "smooth", nn.Softplus: "smooth",
}  # fmt: skip


def module_kind(module: nn.Module) -> str | None:
    """Activation family of a module; also Hugging Face's activation classes, by name."""
    for cls, kind in KIND_BY_MODULE.items():
        if isinstance(module, cls):
            return kind
    name = type(module).__name__.lower()
    if name.endswith("activation") or name in ("quickgelu", "newgelu"):
        return "smooth"
    return None


def unit_dim(y: Tensor) -> int:
    return 1 if y.dim() >= 4 else y.dim() - 1


@dataclass
class SiteStats:
    """Sums over every call of one site: reducible across ranks."""

    kind: str
    tanh_band: float
    sigmoid_band: float
    calls: int = 0
    values: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    saturated: int = 0
    alive: Tensor | None = None  # per unit: non-zero anywhere yet (ReLU family)

    def add(self, y: Tensor, x: Any = None) -> None:
        y = y.detach().float()
        if self.kind in ("tanh", "sigmoid") and isinstance(x, Tensor) and x.shape == y.shape:
            # sigmoid(-inf) is a mask, not a stuck unit (Llama 4's router scores the experts
            # it did not pick as -inf): only finite pre-activations can saturate
            y = y[torch.isfinite(x.detach())]
        self.calls += 1
        self.values += y.numel()
        self.total += float(y.sum())
        self.total_sq += float((y * y).sum())
        if self.kind == "tanh":
            self.saturated += int((y.abs() > self.tanh_band).sum())
        elif self.kind == "sigmoid":
            low = self.sigmoid_band
            self.saturated += int(((y < low) | (y > 1 - low)).sum())
        if self.kind == "relu" and y.dim() >= 1:
            dim = unit_dim(y)
            units = (y != 0).transpose(0, dim).reshape(y.shape[dim], -1).any(dim=1).cpu()
            same = self.alive is not None and self.alive.shape == units.shape
            self.alive = (self.alive | units) if same and self.alive is not None else units


@dataclass
class ActivationRecorder(TorchFunctionMode):
    """Attributes every activation output to a site: a module name, or module:function."""

    names: dict[nn.Module, str]
    tanh_band: float
    sigmoid_band: float
    sites: dict[str, SiteStats] = field(default_factory=dict)
    stack: list[nn.Module] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def stats(self, site: str, kind: str) -> SiteStats:
        return self.sites.setdefault(site, SiteStats(kind, self.tanh_band, self.sigmoid_band))

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        kind = KIND_BY_FUNCTION.get(getattr(func, "__name__", ""))
        inside_activation = any(module_kind(m) for m in self.stack)
        if kind and not inside_activation and isinstance(out, Tensor) and out.is_floating_point():
            owner = self.names[self.stack[-1]] if self.stack else "<root>"
            self.stats(f"{owner}:{func.__name__}", kind).add(out, args[0] if args else None)
        return out


@contextmanager
def module_stack(model: nn.Module, recorder: ActivationRecorder) -> Iterator[None]:
    """Pre/post forward hooks keep recorder.stack and record activation modules' outputs."""

    def enter(module: nn.Module, _args: Any) -> None:
        recorder.stack.append(module)

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        recorder.stack.pop()
        kind = module_kind(module)
        if kind and isinstance(output, Tensor) and not any(module_kind(m) for m in recorder.stack):
            recorder.stats(recorder.names[module], kind).add(output, args[0] if args else None)

    handles = []
    try:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))
        yield
    finally:
        for handle in handles:
            handle.remove()


def record_sites(
    model: nn.Module, forwards: Sequence[Callable[[], Any]], tanh_band: float, sigmoid_band: float
) -> dict[str, SiteStats]:
    """Every site's statistics over all the `forwards` (each runs the model on one batch): a
    unit is dead only if it is zero on every example of every batch."""
    from nndiag.core.hooks import module_names

    recorder = ActivationRecorder(module_names(model), tanh_band, sigmoid_band)
    with module_stack(model, recorder), torch.no_grad(), recorder:
        for forward in forwards:
            forward()
    return recorder.sites
