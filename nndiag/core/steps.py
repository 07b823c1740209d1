"""The training step: how a batch becomes a loss, and what the model saw on the way.

A model definition gives either `loss_fn(outputs, targets)` with batches of (inputs, targets), or
its own `training_step(model, batch) -> loss` (or `(loss, outputs)`): the shape of Lightning's
`training_step`, Hugging Face's `compute_loss` and a plain loop's body, with batches as the loader
yields them. Every probe goes through `run_step`, which calls that step on a copy and captures,
with hooks on the root module, the inputs its forward was called with and what it returned (the
first call; a contrastive step that calls the model twice is captured at its first view). The
same hooks can substitute those inputs (zeroed, redrawn), whatever the batch looks like.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nndiag.core.contract import call_model
from nndiag.core.tensors import Arguments
from nndiag.errors import ContractError

StepFn = Callable[[nn.Module, Any], Any]  # (model, batch) -> loss | (loss, outputs)


@dataclass
class StepRun:
    loss: Tensor  # a scalar
    outputs: Any  # the root module's output at its first call (or the step's own, when given)
    inputs: Arguments | None  # the root module's arguments then; None if it was never called


def loss_step(loss_fn: Callable[[Any, Tensor], Tensor]) -> StepFn:
    """The step of the (inputs, targets) contract: loss_fn(model(inputs), targets)."""

    def step(model: nn.Module, batch: Any) -> Tensor:
        inputs, targets = batch
        return loss_fn(call_model(model, inputs), targets)

    return step


def run_step(
    step: StepFn,
    model: nn.Module,
    batch: Any,
    substitute: Callable[[Arguments], Arguments] | None = None,
) -> StepRun:
    """Call `step(model, batch)`, capturing the root module's first call; with `substitute`,
    every call of the root module gets substitute(its arguments) instead."""
    captured: dict[str, Any] = {}

    def enter(_module: nn.Module, args: Any, kwargs: Any) -> Any:
        call = Arguments(tuple(args), dict(kwargs))
        if substitute is not None:
            call = substitute(call)
        captured.setdefault("inputs", call)
        return (call.args, call.kwargs) if substitute is not None else None

    def leave(_module: nn.Module, _args: Any, _kwargs: Any, output: Any) -> None:
        captured.setdefault("outputs", output)

    handles = [
        model.register_forward_pre_hook(enter, with_kwargs=True, prepend=True),
        model.register_forward_hook(leave, with_kwargs=True, prepend=True),
    ]
    try:
        result = step(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    loss, outputs = _split(result)
    return StepRun(loss, captured.get("outputs", outputs), captured.get("inputs"))


def _split(result: Any) -> tuple[Tensor, Any]:
    """A step returns the loss, or (loss, outputs) as Hugging Face's compute_loss(...,
    return_outputs=True) does, or Lightning's {"loss": ...}."""
    if isinstance(result, dict) and "loss" in result:
        return result["loss"], result
    if isinstance(result, (tuple, list)) and result and isinstance(result[0], Tensor):
        return result[0], result[1] if len(result) > 1 else None
    if isinstance(result, Tensor):
        return result, None
    raise ContractError(
        f"training_step must return the loss (a scalar Tensor) or (loss, outputs), got "
        f"{type(result).__name__}"
    )


def is_scalar(loss: Any) -> bool:
    return isinstance(loss, Tensor) and loss.numel() == 1


def float_loss(run: StepRun) -> float:
    return float(run.loss.detach().float().reshape(()))


def no_grad_step(step: StepFn, model: nn.Module, batch: Any) -> StepRun:
    with torch.no_grad():
        return run_step(step, model, batch)
