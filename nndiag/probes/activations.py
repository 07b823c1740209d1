"""activations: dead and saturated units at every activation site, on one batch at init.

Sites are activation modules (nn.ReLU, nn.Tanh, Hugging Face's GELU classes, ...) and functional
calls (torch.relu, F.relu, torch.tanh, torch.sigmoid, F.gelu, F.silu, in-place variants), observed
with a TorchFunctionMode. Calls made inside an activation module belong to that module's site (so
the tanh inside the GELU approximation is not a tanh site). A unit is a channel (dim 1) for 4-D and
5-D outputs, otherwise the last dimension. See docs/probes/activations.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from nndiag.context import Context, call_model
from nndiag.findings import Code, Finding, Severity, finding
from nndiag.hooks import module_names
from nndiag.report import Highlight, ProbeResult, Row, Status, Table

NAME = "activations"

# TheDeepChecker (Ben Braiek & Khomh 2022) flags a layer when more than half of its units are
# dead or saturated.
DEAD_FRACTION_MAX = 0.5
SATURATED_FRACTION_MAX = 0.5
# Saturation bands: tanh |y| > 0.99 and sigmoid y < 0.01 or y > 0.99, where the derivative has
# fallen below 2% (tanh: 1 - 0.99² ≈ 0.02) or 4% (sigmoid: 0.99 · 0.01 of 0.25) of its peak.
TANH_SATURATION = 0.99
SIGMOID_SATURATION = 0.01

KIND_BY_FUNCTION = {
    "relu": "relu",
    "relu_": "relu",
    "relu6": "relu",
    "hardtanh": "tanh",
    "hardtanh_": "tanh",
    "tanh": "tanh",
    "tanh_": "tanh",
    "sigmoid": "sigmoid",
    "sigmoid_": "sigmoid",
    "hardsigmoid": "sigmoid",
    "gelu": "smooth",
    "silu": "smooth",
    "mish": "smooth",
    "elu": "smooth",
    "selu": "smooth",
    "celu": "smooth",
    "softplus": "smooth",
}
KIND_BY_MODULE: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu",
    nn.Tanh: "tanh",
    nn.Hardtanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.Hardsigmoid: "sigmoid",
    nn.GELU: "smooth",
    nn.SiLU: "smooth",
    nn.Mish: "smooth",
    nn.ELU: "smooth",
    nn.SELU: "smooth",
    nn.CELU: "smooth",
    nn.Softplus: "smooth",
}


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
    kind: str
    calls: int = 0
    values: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    saturated: int = 0
    alive: Tensor | None = None  # per unit: has it been non-zero anywhere yet

    def add(self, y: Tensor) -> None:
        y = y.detach().float()
        self.calls += 1
        self.values += y.numel()
        self.total += float(y.sum())
        self.total_sq += float((y * y).sum())
        if self.kind == "tanh":
            self.saturated += int((y.abs() > TANH_SATURATION).sum())
        elif self.kind == "sigmoid":
            self.saturated += int(((y < SIGMOID_SATURATION) | (y > 1 - SIGMOID_SATURATION)).sum())
        if self.kind == "relu" and y.dim() >= 1:
            dim = unit_dim(y)
            units = (y != 0).transpose(0, dim).reshape(y.shape[dim], -1).any(dim=1).cpu()
            self.alive = (
                units
                if self.alive is None or self.alive.shape != units.shape
                else (self.alive | units)
            )

    def row(self, site: str) -> Row:
        mean = self.total / max(1, self.values)
        var = max(0.0, self.total_sq / max(1, self.values) - mean * mean)
        dead = 1.0 - float(self.alive.float().mean()) if self.alive is not None else math.nan
        saturated = self.saturated / self.values if self.kind in ("tanh", "sigmoid") else math.nan
        return {
            "site": site,
            "kind": self.kind,
            "calls": self.calls,
            "units": int(self.alive.numel()) if self.alive is not None else None,
            "mean": mean,
            "std": math.sqrt(var),
            "dead_fraction": dead,
            "saturated_fraction": saturated,
        }


@dataclass
class ActivationRecorder(TorchFunctionMode):
    """Attributes every activation output to a site: module name, or module:function#n."""

    names: dict[nn.Module, str]
    sites: dict[str, SiteStats] = field(default_factory=dict)
    stack: list[nn.Module] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        kind = KIND_BY_FUNCTION.get(getattr(func, "__name__", ""))
        inside_activation = any(module_kind(m) for m in self.stack)
        if kind and not inside_activation and isinstance(out, Tensor) and out.is_floating_point():
            owner = self.names[self.stack[-1]] if self.stack else "<root>"
            site = f"{owner}:{func.__name__}"
            self.counters[site] = self.counters.get(site, 0) + 1
            self.sites.setdefault(site, SiteStats(kind)).add(out)
        return out


@contextmanager
def _module_stack(model: nn.Module, recorder: ActivationRecorder) -> Iterator[None]:
    """Pre/post forward hooks keep recorder.stack and record activation modules' outputs."""

    def enter(module: nn.Module, _args: Any) -> None:
        recorder.stack.append(module)

    def leave(module: nn.Module, _args: Any, output: Any) -> None:
        recorder.stack.pop()
        kind = module_kind(module)
        if kind and isinstance(output, Tensor) and not any(module_kind(m) for m in recorder.stack):
            recorder.sites.setdefault(recorder.names[module], SiteStats(kind)).add(output)

    handles = []
    try:
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))
        yield
    finally:
        for handle in handles:
            handle.remove()


def probe(ctx: Context) -> ProbeResult:
    model = ctx.fresh_model()  # the user's mode (train by default): BatchNorm uses batch stats
    recorder = ActivationRecorder(module_names(model))
    with _module_stack(model, recorder), torch.no_grad(), recorder:
        call_model(model, ctx.inputs)

    rows = [stats.row(site) for site, stats in recorder.sites.items()]
    findings: list[Finding] = []
    highlights: list[Highlight] = []
    dead = [(i, r) for i, r in enumerate(rows) if r["dead_fraction"] > DEAD_FRACTION_MAX]
    saturated = [
        (i, r) for i, r in enumerate(rows) if r["saturated_fraction"] > SATURATED_FRACTION_MAX
    ]
    highlights += [Highlight(i, "dead_fraction", Severity.WARNING) for i, _ in dead]
    highlights += [Highlight(i, "saturated_fraction", Severity.WARNING) for i, _ in saturated]
    if dead:
        worst = max(r["dead_fraction"] for _, r in dead)
        findings.append(
            finding(
                Code.DEAD_UNITS,
                NAME,
                f"{len(dead)} ReLU site(s) have more than {DEAD_FRACTION_MAX:.0%} of their units "
                f"at zero for the whole batch (worst {worst:.0%})",
                where=[r["site"] for _, r in dead],
                evidence={r["site"]: r["dead_fraction"] for _, r in dead},
            )
        )
    if saturated:
        worst = max(r["saturated_fraction"] for _, r in saturated)
        findings.append(
            finding(
                Code.SATURATED_UNITS,
                NAME,
                f"{len(saturated)} sigmoid/tanh site(s) have more than "
                f"{SATURATED_FRACTION_MAX:.0%} of their outputs in the flat region "
                f"(worst {worst:.0%})",
                where=[r["site"] for _, r in saturated],
                evidence={r["site"]: r["saturated_fraction"] for _, r in saturated},
            )
        )
    return ProbeResult(
        NAME,
        Status.OK,
        metrics={"sites": len(rows)},
        tables=(Table("sites", tuple(rows), tuple(highlights)),),
        findings=tuple(findings),
    )
