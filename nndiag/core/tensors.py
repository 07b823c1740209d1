"""Tensors inside the nested inputs of the model contract: a Tensor, a tuple/list or a dict."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class Arguments:
    """The positional and keyword arguments of a forward call (as a training step made it)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def map_tensors(fn: Callable[[Tensor], Any], obj: Any) -> Any:
    """Apply fn to every tensor inside a structure: a Tensor, tuple/list/namedtuple, dict or
    other mapping (a ModelOutput, a BatchEncoding), a dataclass, forward Arguments."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, Arguments):
        return Arguments(map_tensors(fn, obj.args), map_tensors(fn, obj.kwargs))
    if isinstance(obj, Mapping):
        items = {k: map_tensors(fn, v) for k, v in obj.items()}
        if type(obj) is dict:
            return items
        return _same_mapping(obj, items)
    if isinstance(obj, (tuple, list)):
        values = [map_tensors(fn, v) for v in obj]
        if hasattr(obj, "_fields"):  # a namedtuple takes its fields as arguments
            return type(obj)(*values)
        return type(obj)(values)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            f.name: map_tensors(fn, getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init
        }
        return dataclasses.replace(obj, **changes)
    return obj


def _same_mapping(obj: Mapping[Any, Any], items: dict[Any, Any]) -> Any:
    """A mapping of the same type (a Hugging Face ModelOutput, an OrderedDict, a BatchEncoding),
    so that its users can still read it as they did (`outputs[1]`, `outputs.logits`)."""
    try:
        new = copy.copy(obj)
        for key, value in items.items():
            new[key] = value  # type: ignore[index]
        return new
    except Exception:  # a mapping that cannot be copied: its items as a plain dict
        return items


def tensors_in(obj: Any) -> list[Tensor]:
    """Every tensor inside a structure, in map_tensors' order. Read only: rebuilding a dataclass
    with placeholders would run its validation on them (PyTorch Geometric's SelectOutput checks
    `node_index.dim()` in its __post_init__)."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, Arguments):
        parts: list[Any] = [obj.args, obj.kwargs]
    elif isinstance(obj, Mapping):
        parts = list(obj.values())
    elif isinstance(obj, (tuple, list)):
        parts = list(obj)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        parts = [getattr(obj, f.name) for f in dataclasses.fields(obj) if f.init]
    else:
        return []
    return [t for part in parts for t in tensors_in(part)]


def named_tensors(obj: Any, prefix: str) -> list[tuple[str, Tensor]]:
    """('inputs.input_ids', t) pairs, in structure order."""
    if isinstance(obj, Tensor):
        return [(prefix, obj)]
    if isinstance(obj, Arguments):
        if not obj.kwargs and len(obj.args) == 1:
            return named_tensors(obj.args[0], prefix)
        return named_tensors(obj.args, prefix) + named_tensors(obj.kwargs, prefix)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return named_tensors(fields, prefix)
    if isinstance(obj, Mapping):
        return [pair for k, v in obj.items() for pair in named_tensors(v, f"{prefix}.{k}")]
    if isinstance(obj, (tuple, list)):
        return [pair for i, v in enumerate(obj) for pair in named_tensors(v, f"{prefix}[{i}]")]
    return []


def first_float(obj: Any) -> Tensor | None:
    return next((t for t in tensors_in(obj) if t.is_floating_point()), None)


def replace_tensor(inputs: Any, index: int, x: Tensor) -> Any:
    """The same structure with its index-th tensor (in structure order) replaced by x."""
    seen = [-1]

    def swap(t: Tensor) -> Tensor:
        seen[0] += 1
        return x if seen[0] == index else t

    return map_tensors(swap, inputs)


def is_mask(t: Tensor) -> bool:
    """A float tensor of zeros and ones only: an attention or permutation mask, not a signal."""
    return t.is_floating_point() and bool(((t == 0) | (t == 1)).all())


def signal_index(inputs: Any) -> int | None:
    """The index (structure order) of the float input that carries the signal: the first that is
    not a 0/1 mask; a mask only when every float input is one and no token ids are given."""
    tensors = tensors_in(inputs)
    floats = [i for i, t in enumerate(tensors) if t.is_floating_point()]
    signals = [i for i in floats if not is_mask(tensors[i])]
    if signals:
        return signals[0]
    tokens = any(not t.is_floating_point() and t.dtype != torch.bool for t in tensors)
    return None if tokens or not floats else floats[0]


def describe(obj: Any) -> str:
    """Shapes and dtypes of a nested structure, e.g. 'Tensor[16, 3, 32, 32] float32'."""
    if isinstance(obj, Tensor):
        return f"Tensor[{', '.join(map(str, obj.shape))}] {str(obj.dtype).removeprefix('torch.')}"
    if isinstance(obj, Arguments):
        if not obj.kwargs and len(obj.args) == 1:
            return describe(obj.args[0])
        return describe(obj.args) + (describe(obj.kwargs) if obj.kwargs else "")
    if isinstance(obj, Mapping):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in obj) + ")"
    return type(obj).__name__


def rows_of(batch_inputs: Any, targets: Tensor | None = None) -> int:
    """Examples in a batch: the targets' leading dimension (1 for a 0-d target); without
    targets, the first input tensor's."""
    if targets is not None:
        return int(targets.shape[0]) if targets.dim() else 1
    first = next((t for t in tensors_in(batch_inputs) if t.dim()), None)
    return int(first.shape[0]) if first is not None else 1


def take_examples(obj: Any, index: Any, rows: int) -> Any:
    """Select examples (dim 0) of every tensor whose leading dimension is the batch's `rows`."""
    return map_tensors(lambda t: t[index] if t.dim() and t.shape[0] == rows else t, obj)


def tied_input(inputs: Any, rows: int) -> str:
    """The name of an input tensor not laid out by example (leading size neither the batch's nor
    1), such as a graph's edge list [2, E]: examples tied by it cannot be taken apart."""
    for name, t in named_tensors(inputs, "inputs"):
        if t.dim() and t.shape[0] not in (rows, 1):
            return name
    return ""


def first_examples(batch: Any, rows: int, count: int) -> tuple[Any, int]:
    """The batch's first `count` examples (every tensor laid out by example is cut), and how many
    that is: the whole batch when it has no more, or when its inputs are tied (a graph is one
    example of many nodes)."""
    if count >= rows or tied_input(batch, rows):
        return batch, rows
    return take_examples(batch, slice(0, count), rows), count


def magnitude64(t: Tensor) -> Tensor:
    """A tensor's values in float64 for statistics, detached; complex values by their modulus
    (a norm of |z| is the complex norm; the real part alone would drop half the tensor)."""
    t = t.detach()
    return (t.abs() if t.is_complex() else t).double()
