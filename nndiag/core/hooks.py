"""Forward hooks built by small factories and always removed in `finally` (the torchinfo pattern)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn

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


@contextmanager
def tensor_hooks(pairs: Iterable[tuple[Tensor, Callable[[Tensor], Any]]]) -> Iterator[None]:
    """Gradient hooks on tensors, removed when the block ends."""
    handles = []
    try:
        for tensor, hook in pairs:
            handles.append(tensor.register_hook(hook))
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
