"""Forward hooks built by small factories and always removed (the torchinfo pattern)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

ForwardHook = Callable[[nn.Module, Any, Any], Any]


@contextmanager
def forward_hooks(hooks: dict[nn.Module, ForwardHook]) -> Iterator[None]:
    """Register one forward hook per module for the duration of the block, removed in finally."""
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
def execution_order(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Yield a list that fills with modules in the order their forward first returns.

    Children return before their parents, so leaf modules appear in data-flow order.
    """
    order: list[nn.Module] = []
    hook = _record_first_call(order, set())
    with forward_hooks({m: hook for m in model.modules()}):
        yield order
