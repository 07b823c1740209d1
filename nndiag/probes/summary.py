"""summary: parameters per module (trainable / frozen) and output shape per module.

One forward pass of the fixed batch through a copy, with a forward hook on every module recording
its output shape (as torchinfo does). Rows follow the module tree in pre-order; modules that the
forward pass never called say so. Shared parameters are counted once in the totals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nndiag.findings import Finding
from nndiag.probes.base import Presentation, ProbeSpec
from nndiag.report import Row, Table

if TYPE_CHECKING:
    from nndiag.core.context import Context

NAME = "summary"


@dataclass(frozen=True)
class Config:
    """The summary has no thresholds."""


@dataclass(frozen=True)
class Measurement:
    rows: tuple[Row, ...]
    parameters: int
    trainable: int
    buffers: int
    not_called: int


def measure(ctx: Context, config: Config) -> Measurement:
    import torch
    from torch import nn

    from nndiag.core.hooks import call_records, forward_hooks, module_names

    CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)
    from nndiag.core.tensors import tensors_in

    model = ctx.fresh_model()
    shapes: dict[Any, str] = {}

    def record(module: Any, _inputs: Any, output: Any) -> None:
        tensors = tensors_in(output)
        shown = "x".join(map(str, tensors[0].shape)) if tensors else type(output).__name__
        shapes.setdefault(module, shown)

    with (
        forward_hooks(dict.fromkeys(model.modules(), record)),
        call_records(model) as calls,
        torch.no_grad(),
    ):
        ctx.forward(model)

    def output_shape(module: nn.Module) -> str:
        if module in shapes:
            return shapes[module]
        if isinstance(module, CONTAINERS):
            return "container"  # holds modules, is never called itself
        own = list(module.parameters(recurse=False))
        if own and any(calls.parameter_use(p) != "dropped" for p in own):
            return "used functionally"  # MultiheadAttention's out_proj: its weight is read
        return "not called"

    names = module_names(model)
    rows = []
    for module, name in names.items():
        own = list(module.parameters(recurse=False))
        trainable = sum(p.numel() for p in own if p.requires_grad)
        frozen = sum(p.numel() for p in own if not p.requires_grad)
        rows.append(
            {
                "module": name,
                "type": type(module).__name__,
                "depth": 0 if module is model else name.count(".") + 1,
                "output_shape": output_shape(module),
                "params": trainable + frozen,
                "trainable": trainable,
                "frozen": frozen,
            }
        )
    unique = {id(p): p for p in model.parameters()}.values()
    return Measurement(
        rows=tuple(rows),
        parameters=sum(p.numel() for p in unique),
        trainable=sum(p.numel() for p in unique if p.requires_grad),
        buffers=sum(b.numel() for b in model.buffers()),
        not_called=sum(r["output_shape"] == "not called" for r in rows),
    )


def diagnose(m: Measurement, config: Config) -> list[Finding]:
    return []


def present(m: Measurement, config: Config) -> Presentation:
    frozen = m.parameters - m.trainable
    headline = f"{m.parameters:,} parameters ({m.trainable:,} trainable), {len(m.rows)} modules"
    if m.not_called:
        headline += f", {m.not_called} never called"
    return Presentation(
        headline=headline,
        metrics={
            "parameters": m.parameters,
            "trainable": m.trainable,
            "frozen": frozen,
            "modules": len(m.rows),
            "modules_not_called": m.not_called,
            "buffers": m.buffers,
        },
        tables=(Table("modules", m.rows, key="module"),),
    )


SPEC = ProbeSpec(
    name=NAME,
    sharded=True,
    summary="parameters per module (trainable/frozen), output shape per module",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    # Measured in plain training steps of the same model: ResNet-50 0.6, GPT-2 small 0.4
    # (benchmarks/real_size/run.py, default check, 2-core CPU, 2026-11-28).
    cost=lambda c: 0.6,
    quick=True,
    order=10,
)
