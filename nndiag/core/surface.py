"""The function under study, f(x): the model's logits as a function of its input x, or of the
first floating-point activation (the embedding output) for token inputs; and the blocks whose
outputs the per-block profile watches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nndiag.core.context import Context
from nndiag.core.contract import call_model, eval_mode_backward, output_tensor
from nndiag.core.hooks import ForwardHook, execution_order, forward_hooks
from nndiag.core.tensors import (
    first_float,
    replace_tensor,
    signal_index,
    tensors_in,
)

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


def ordered_blocks(model: nn.Module, inputs: Any) -> list[nn.Module]:
    """The blocks in the order their forward first returns on `inputs`."""
    with execution_order(model, blocks(model)) as order, torch.no_grad():
        call_model(model, inputs)
    return order


@dataclass
class Surface:
    """f(x) for the model copy: x replaces the float input that carries the signal (not a 0/1
    mask), or the embedding output for token inputs."""

    model: nn.Module
    inputs: Any
    x0: Tensor  # the point of measurement, detached
    entry: nn.Module | None  # the block whose output x replaces (token inputs), else None
    index: int = 0  # which input tensor x replaces (structure order), when entry is None

    def __call__(self, x: Tensor) -> Tensor:
        with eval_mode_backward(self.model):  # the copy is measured in eval mode
            if self.entry is None:
                return output_tensor(
                    call_model(self.model, replace_tensor(self.inputs, self.index, x))
                )
            with forward_hooks({self.entry: _substitute_output(x)}):  # one forward: a new hook
                return output_tensor(call_model(self.model, self.inputs))


def _substitute_output(x: Tensor) -> ForwardHook:
    """Replace the first float tensor of the entry's first output in a forward (the one x0 was
    read from) by x; the rest of the output (a pooled output, an attention map), and later calls
    of the same module (a decoder embedding its previous tokens), are left as they are."""
    calls = [0]

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        calls[0] += 1
        if calls[0] > 1:
            return None
        index = next(i for i, t in enumerate(tensors_in(output)) if t.is_floating_point())
        # A copy, not x itself: a model may scale its embedding output in place (CTRL does).
        return replace_tensor(output, index, x.clone())

    return hook


def surface(model: nn.Module, inputs: Any, order: list[nn.Module]) -> Surface:
    index = signal_index(inputs)
    if index is not None:
        return Surface(model, inputs, tensors_in(inputs)[index].detach(), None, index)
    # Token inputs: x is the first floating-point activation, the output of the first module
    # of any kind to return one (the embedding), not the first block (a whole encoder may be
    # one block when it holds a single shared layer, as ALBERT's does).
    outputs: dict[nn.Module, Tensor] = {}

    def keep(module: nn.Module, _inputs: Any, output: Any) -> None:
        first = first_float(output)
        if first is not None and not outputs:
            outputs[module] = first.detach()

    with forward_hooks(dict.fromkeys(model.modules(), keep)), torch.no_grad():
        call_model(model, inputs)
    if not outputs:
        raise ValueError("no floating-point input or activation to differentiate against")
    [(entry, x0)] = outputs.items()
    return Surface(model, inputs, x0, entry)


def calibrated_copy(ctx: Context, model: nn.Module | None, batches: int) -> nn.Module:
    """A frozen copy in eval mode with BatchNorm statistics averaged over a few real batches
    (a copy of `model` when given, else a fresh copy of the user's)."""
    import copy

    model = ctx.fresh_model() if model is None else copy.deepcopy(model)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        if norm.track_running_stats:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the calibration batches
    if norms:
        model.train()
        ctx.forward(model)
        for _ in range(batches - 1):
            ctx.forward(model, ctx.next_batch())
    for module in model.modules():
        if hasattr(module, "inplace"):
            setattr(module, "inplace", False)  # noqa: B010  (in place would overwrite a block's output)
    return model.eval().requires_grad_(False)
