"""summary: parameters per module (trainable / frozen) and output shape per module.

One forward pass of the fixed batch through a copy, with a forward hook on every module recording
its output shape (as torchinfo does). Rows follow the module tree in pre-order; modules that the
forward pass never called say so. Shared parameters are counted once in the totals.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nndiag.context import Context, call_model, tensors_in
from nndiag.hooks import ForwardHook, forward_hooks, module_names
from nndiag.report import ProbeResult, Status, Table

NAME = "summary"


def _record_shape(shapes: dict[nn.Module, str]) -> ForwardHook:
    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        tensors = tensors_in(output)
        shapes.setdefault(
            module, "x".join(map(str, tensors[0].shape)) if tensors else type(output).__name__
        )

    return hook


def probe(ctx: Context) -> ProbeResult:
    model = ctx.fresh_model()
    shapes: dict[nn.Module, str] = {}
    hook = _record_shape(shapes)
    with forward_hooks({m: hook for m in model.modules()}), torch.no_grad():
        call_model(model, ctx.inputs)

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
                "output_shape": shapes.get(module, "not called"),
                "params": trainable + frozen,
                "trainable": trainable,
                "frozen": frozen,
            }
        )

    unique = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in unique)
    trainable_total = sum(p.numel() for p in unique if p.requires_grad)
    return ProbeResult(
        name=NAME,
        status=Status.OK,
        metrics={
            "parameters": total,
            "trainable": trainable_total,
            "frozen": total - trainable_total,
            "modules": len(names),
            "modules_not_called": len(names) - len(shapes),
            "buffers": sum(b.numel() for b in model.buffers()),
        },
        tables=(Table("modules", tuple(rows)),),
    )
