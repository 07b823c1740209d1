"""Low-precision training at fp32 cost: autocast's casts without its kernels.

On a CPU without bf16/fp16 arithmetic units, autocast runs emulated kernels tens of times slower
than fp32 (GPT-2 small, batch 8: 12 s per fp32 step, 470 s under bf16 autocast). What the
precision probe needs is where values leave the format's range, forward and backward, and that
depends on which tensors are rounded, not on how fast. Emulation rounds, through the format,
the inputs and outputs of the ops autocast runs in lower precision (matmuls, linear layers,
convolutions, attention), computing in fp32 as the GPU's fp16 kernels accumulate; rounding with
`.to(dtype).to(float32)` is differentiable, so gradients flowing back through those ops are
rounded too (fp16 flushes what falls below its range, and overflows what exceeds 65504).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from nndiag.core.tensors import map_tensors

# The ops torch.autocast runs in lower precision on CUDA (its "fp16 list").
LOWER_PRECISION_OPS = frozenset({
    "linear", "matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "addmm", "addbmm", "baddbmm",
    "addmv", "mv", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "scaled_dot_product_attention", "prelu", "chain_matmul", "einsum",
})  # fmt: skip


class RoundThrough(TorchFunctionMode):
    """Rounds the float tensors going into and out of the lower-precision ops through `dtype`."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype

    def _round(self, t: Tensor) -> Tensor:
        if not t.is_floating_point() or t.dtype == self.dtype:
            return t
        return t.to(self.dtype).to(t.dtype)

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        # Inside this method the mode is off: the rounding casts are not intercepted again.
        kwargs = kwargs or {}
        if getattr(func, "__name__", "") not in LOWER_PRECISION_OPS:
            return func(*args, **kwargs)
        args, kwargs = map_tensors(self._round, args), map_tensors(self._round, kwargs)
        return map_tensors(self._round, func(*args, **kwargs))
