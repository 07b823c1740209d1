"""Forward hooks built by small factories and always removed in `finally` (the torchinfo pattern)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

ForwardHook = Callable[[nn.Module, Any, Any], Any]


@contextmanager
def forward_hooks(hooks: dict[nn.Module, ForwardHook]) -> Iterator[None]:
    """Register one forward hook per module for the duration of the block."""
    handles = []
    try:
        for module, hook in hooks.items():
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


def module_names(model: nn.Module) -> dict[nn.Module, str]:
    """Qualified name of every submodule, in pre-order; the root is named by its class."""
    return {module: name or type(model).__name__ for name, module in model.named_modules()}


def _record_first_call(order: list[nn.Module], seen: set[nn.Module]) -> ForwardHook:
    def hook(module: nn.Module, _inputs: Any, _output: Any) -> None:
        if module not in seen:
            seen.add(module)
            order.append(module)

    return hook


@contextmanager
def execution_order(
    model: nn.Module, candidates: Iterable[nn.Module] | None = None
) -> Iterator[list[nn.Module]]:
    """Yield a list that fills, during the block's forward passes, with the modules (all of
    them, or `candidates`) in the order their forward first returns. Children return before
    their parents, so leaf modules appear in data-flow order."""
    order: list[nn.Module] = []
    hook = _record_first_call(order, set())
    modules = model.modules() if candidates is None else candidates
    with forward_hooks(dict.fromkeys(modules, hook)):
        yield order


@contextmanager
def entry_order(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Like execution_order, but in the order modules are entered (parents before children):
    the module after a leaf in this list is the one that reads its output next."""
    order: list[nn.Module] = []
    seen: set[nn.Module] = set()

    def enter(module: nn.Module, _args: Any) -> None:
        if module not in seen:
            seen.add(module)
            order.append(module)

    handles = [m.register_forward_pre_hook(enter) for m in model.modules()]
    try:
        yield order
    finally:
        for handle in handles:
            handle.remove()


@dataclass(frozen=True)
class Call:
    """How a module's first call ran: with autograd recording or not, and whether its output
    carries a graph (a trainable module whose output does not was cut inside its forward)."""

    grad_enabled: bool
    output_requires_grad: bool


@contextmanager
def call_records(model: nn.Module) -> Iterator[dict[nn.Module, Call]]:
    """Yield a dict that fills with each module's first Call during the block. A forward hook
    runs in its caller's grad mode: under a caller's `torch.no_grad()` it sees autograd off."""
    from nndiag.core.tensors import tensors_in

    calls: dict[nn.Module, Call] = {}

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        if module not in calls:
            floats = [t for t in tensors_in(output) if t.is_floating_point()]
            calls[module] = Call(torch.is_grad_enabled(), any(t.requires_grad for t in floats))

    with forward_hooks(dict.fromkeys(model.modules(), hook)):
        yield calls
