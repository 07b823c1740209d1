"""Tensors inside the nested inputs of the model contract: a Tensor, a tuple/list or a dict."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor


def map_tensors(fn: Callable[[Tensor], Any], obj: Any) -> Any:
    """Apply fn to every tensor inside a Tensor / tuple / list / dict input structure."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(fn, v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(map_tensors(fn, v) for v in obj)
    return obj


def tensors_in(obj: Any) -> list[Tensor]:
    found: list[Tensor] = []
    map_tensors(found.append, obj)
    return found


def named_tensors(obj: Any, prefix: str) -> list[tuple[str, Tensor]]:
    """('inputs.input_ids', t) pairs, in structure order."""
    if isinstance(obj, Tensor):
        return [(prefix, obj)]
    if isinstance(obj, dict):
        return [pair for k, v in obj.items() for pair in named_tensors(v, f"{prefix}.{k}")]
    if isinstance(obj, (tuple, list)):
        return [pair for i, v in enumerate(obj) for pair in named_tensors(v, f"{prefix}[{i}]")]
    return []


def first_float(obj: Any) -> Tensor | None:
    return next((t for t in tensors_in(obj) if t.is_floating_point()), None)


def replace_first_float(inputs: Any, x: Tensor) -> Any:
    """The same structure with its first floating-point tensor replaced by x."""
    done: list[bool] = []

    def swap(t: Tensor) -> Tensor:
        if t.is_floating_point() and not done:
            done.append(True)
            return x
        return t

    return map_tensors(swap, inputs)


def describe(obj: Any) -> str:
    """Shapes and dtypes of a nested structure, e.g. 'Tensor[16, 3, 32, 32] float32'."""
    if isinstance(obj, Tensor):
        return f"Tensor[{', '.join(map(str, obj.shape))}] {str(obj.dtype).removeprefix('torch.')}"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in obj) + ")"
    return type(obj).__name__


def rows_of(batch_inputs: Any, targets: Tensor) -> int:
    """Examples in a batch: the targets' leading dimension (1 for a 0-d target)."""
    return int(targets.shape[0]) if targets.dim() else 1


def take_examples(obj: Any, index: Any, rows: int) -> Any:
    """Select examples (dim 0) of every tensor whose leading dimension is the batch's `rows`."""
    return map_tensors(lambda t: t[index] if t.dim() and t.shape[0] == rows else t, obj)
