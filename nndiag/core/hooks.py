"""Forward hooks built by small factories and always removed in `finally` (the torchinfo pattern)."""

from __future__ import annotations

import contextvars
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

ForwardHook = Callable[[nn.Module, Any, Any], Any]

# Set while one of our hooks runs: what a probe reads of a module's output (its `.detach()` to
# measure it) is no use of that output by the model (Uses).
_in_our_hook = contextvars.ContextVar("in_our_hook", default=False)


def _ours(hook: ForwardHook) -> ForwardHook:
    def run(module: nn.Module, args: Any, output: Any) -> Any:
        token = _in_our_hook.set(True)
        try:
            return hook(module, args, output)
        finally:
            _in_our_hook.reset(token)

    return run


@contextmanager
def forward_hooks(hooks: dict[nn.Module, ForwardHook]) -> Iterator[None]:
    """Register one forward hook per module for the duration of the block, ahead of the hooks
    already there: FSDP2's post-forward hook reshards a module's parameters into DTensors, and
    ours must still see them whole."""
    handles = []
    try:
        for module, hook in hooks.items():
            handles.append(module.register_forward_hook(_ours(hook), prepend=True))
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
    """How a module's first call ran: with autograd recording or not, whether its output carries
    a graph (a trainable module whose output does not was cut inside its forward), and how that
    output was used afterwards (USES)."""

    grad_enabled: bool
    output_requires_grad: bool
    output_use: str = "used"
    discrete: bool = False  # every output tensor is integer or boolean (indices, masks)


# Reading a tensor's metadata is not using it; these calls use it without passing a gradient.
METADATA = frozenset({
    "shape", "dtype", "device", "size", "dim", "ndim", "numel", "requires_grad", "is_leaf",
    "grad_fn", "is_floating_point", "is_complex", "layout", "names", "is_cuda", "stride",
    "storage_offset", "is_contiguous", "__len__", "__bool__", "data_ptr", "element_size", "nelement",
    "__hash__", "__format__", "__repr__", "__str__",
})  # fmt: skip
DETACHING = frozenset(
    {"detach", "detach_", "data", "item", "tolist", "numpy", "__float__", "__int__"}
)


class Uses(TorchFunctionMode):
    """Which torch functions read each tensor (by identity, while the tensors are kept alive);
    our own hooks' reads are not counted."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[int, set[str]] = {}

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", "")
        if name == "__get__":  # a property: .data, .shape
            name = getattr(getattr(func, "__self__", None), "__name__", name)
        if name not in METADATA and not _in_our_hook.get():
            for t in tree_flatten((args, kwargs or {}))[0]:
                if isinstance(t, torch.Tensor):
                    self.by_id.setdefault(id(t), set()).add(name)
        return func(*args, **(kwargs or {}))

    def of(self, outputs: list[torch.Tensor]) -> str:
        """'used', 'detached' (read only by detach/.data/.item) or 'dropped' (read by nothing);
        'used' when nothing was watched (the mode was not entered)."""
        if not self.by_id:
            return "used"
        names = set().union(*(self.by_id.get(id(t), set()) for t in outputs)) if outputs else set()
        if not names:
            return "dropped"
        return "detached" if names <= DETACHING else "used"


@dataclass
class Calls:
    """What call_records saw: each module's first Call, and how each parameter was read."""

    modules: dict[nn.Module, Call]
    uses: Uses

    def parameter_use(self, param: torch.Tensor) -> str:
        return self.uses.of([param])


@contextmanager
def call_records(model: nn.Module) -> Iterator[Calls]:
    """Yield Calls that fill with each module's first Call during the block (its output's use is
    known when the block ends). A forward hook runs in its caller's grad mode: under a caller's
    `torch.no_grad()` it sees autograd off."""
    from nndiag.core.tensors import tensors_in

    first: dict[nn.Module, tuple[bool, list[torch.Tensor], bool]] = {}
    calls: dict[nn.Module, Call] = {}

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        if module not in first:
            tensors = tensors_in(output)
            floats = [t for t in tensors if t.is_floating_point()]
            discrete = bool(tensors) and not floats
            first[module] = (torch.is_grad_enabled(), floats, discrete)  # ids stay theirs

    uses = Uses()
    try:
        with forward_hooks(dict.fromkeys(model.modules(), hook)), uses:
            yield Calls(calls, uses)
    finally:
        for module, (grad_enabled, floats, discrete) in first.items():
            graph = any(t.requires_grad for t in floats)
            calls[module] = Call(grad_enabled, graph, uses.of(floats), discrete)


# Tensors made from another one's shape, dtype and device only: their values depend on nothing.
CONSTRUCTORS = frozenset({
    "new_zeros", "new_ones", "new_empty", "new_full", "new_tensor", "zeros_like", "ones_like",
    "empty_like", "full_like", "rand_like", "randn_like", "randint_like",
})  # fmt: skip


class Reach(TorchFunctionMode):
    """Forward provenance, op by op: which marked tensors (module outputs, parameters) each
    tensor was computed from. Kept by weak reference, so a freed tensor's reused id is never
    mistaken for it. Indices count: a top-k's indices derive from its scores (a selection is a
    dependence), and so does a detached copy (the gradient is cut, the value is not)."""

    def __init__(self) -> None:
        super().__init__()
        self._from: dict[int, tuple[weakref.ref[torch.Tensor], frozenset[int]]] = {}

    def mark(self, t: torch.Tensor, sources: frozenset[int]) -> None:
        self._from[id(t)] = (weakref.ref(t), sources | self.sources(t))

    def sources(self, t: torch.Tensor) -> frozenset[int]:
        entry = self._from.get(id(t))
        return entry[1] if entry is not None and entry[0]() is t else frozenset()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        if name in CONSTRUCTORS:
            return out
        read = [t for t in tree_flatten((args, kwargs or {}))[0] if isinstance(t, torch.Tensor)]
        found = frozenset().union(*(self.sources(t) for t in read))
        if found:
            written = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            if read and (name.endswith("_") or name == "__setitem__"):  # in place: the target
                written.append(read[0])
            for t in written:
                self.mark(t, found)
        return out


@contextmanager
def reach_from(
    outputs_of: Iterable[nn.Module], parameters_of: Iterable[nn.Module]
) -> Iterator[Reach]:
    """Mark every output of `outputs_of` (each call), and the parameters of `parameters_of`,
    with the module's id, and trace what derives from them during the block:
    `reach.sources(loss)` says which of them the loss depends on in the forward."""
    from nndiag.core.tensors import tensors_in

    reach = Reach()
    for module in parameters_of:
        for p in module.parameters():
            reach.mark(p, frozenset({id(module)}))

    def hook(module: nn.Module, _inputs: Any, output: Any) -> None:
        for t in tensors_in(output):
            reach.mark(t, frozenset({id(module)}))

    with forward_hooks(dict.fromkeys(outputs_of, hook)), reach:
        yield reach


class RandomOps(TorchDispatchMode):
    """Records the aten ops that draw from the RNG (tagged nondeterministic_seeded) while
    active: `bernoulli_` for dropout, `randn`/`normal` for Gaussian sampling, and so on."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if torch.Tag.nondeterministic_seeded in func.tags and _draws(func, args, kwargs):
            self.names.add(func.overloadpacket.__name__)
        return func(*args, **kwargs)


def _draws(func: Any, args: Any, kwargs: dict[str, Any]) -> bool:
    """Whether a tagged op draws: attention kernels are tagged for their dropout, and draw
    nothing at dropout_p = 0."""
    for i, argument in enumerate(func._schema.arguments):
        if argument.name == "dropout_p":
            value = kwargs.get("dropout_p", args[i] if i < len(args) else argument.default_value)
            return bool(value)
    return True
