"""Low-precision training at fp32 cost: autocast's dtype flow, op by op, without its kernels.

On a CPU without bf16/fp16 arithmetic units, autocast runs emulated kernels tens of times slower
than fp32 (GPT-2 small, batch 8: 12 s per fp32 step, 470 s under bf16 autocast). What the
precision probe needs is where values leave the format's range, forward and backward, and that
depends on which tensors are rounded, not on how fast. `Lowered` is a TorchDispatchMode, so it
sees every aten op, inside fused modules too (the attention scores `q @ kᵀ` of
nn.MultiheadAttention's bmm) and in the backward pass, and it follows autocast's rules
(torch.amp, "Autocast Op Reference"):

- ops on autocast's lower-precision list (matmuls, linear, convolutions, attention) take inputs
  rounded to the format and return a result rounded to it: in the format;
- ops on its fp32 list (softmax, norms, exp/log/pow, reductions, losses) compute in fp32;
- any other op is in the format when all its floating-point inputs are, and rounds its result
  then (an fp16 add overflows too); with one fp32 input it promotes to fp32.

Values are kept in float32 and rounded with `.to(dtype).to(float32)`; `first_overflow` records
the first op, and the module running it, whose rounded result is non-finite where the float32
result is finite.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.weak import WeakIdKeyDictionary

# aten ops (overload packets) autocast runs in lower precision on CUDA and CPU.
LOWER_PRECISION_OPS = frozenset({
    "mm", "bmm", "addmm", "addbmm", "baddbmm", "addmv", "mv", "matmul", "linear", "dot", "vdot",
    "convolution", "_convolution", "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "prelu", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "scaled_dot_product_attention", "_native_multi_head_attention",
    "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell", "lstm_cell", "gru_cell", "rnn_tanh_cell",
    "rnn_relu_cell",
})  # fmt: skip
# Ops autocast runs in float32 whatever their inputs (its "fp32 list", and the reductions and
# losses it promotes): their results are float32.
FLOAT32_OPS = frozenset({
    "_softmax", "_log_softmax", "softmax", "log_softmax", "native_layer_norm", "layer_norm",
    "native_group_norm", "group_norm", "native_batch_norm", "_native_batch_norm_legit",
    "_native_batch_norm_legit_functional", "_batch_norm_with_update", "rms_norm",
    "_fused_rms_norm", "exp", "expm1", "log", "log10", "log2", "log1p", "pow", "reciprocal",
    "rsqrt", "acos", "asin", "cosh", "sinh", "tan", "erfinv", "softplus", "sum", "prod", "cumsum",
    "cumprod", "norm", "linalg_vector_norm", "frobenius_norm", "logsumexp", "cosine_similarity",
    "cdist", "pdist", "dist", "renorm", "nll_loss", "nll_loss2d", "nll_loss_forward",
    "nll_loss2d_forward", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "soft_margin_loss",
    "multilabel_margin_loss", "multi_margin_loss", "margin_ranking_loss", "hinge_embedding_loss",
    "cosine_embedding_loss", "poisson_nll_loss", "triplet_margin_loss", "mean", "var", "std",
    "var_mean", "std_mean",
})  # fmt: skip
# Ops that allocate without reading values: their (uninitialised) result is in the format of
# their inputs but must not be rounded or judged.
ALLOCATING_OPS = frozenset({
    "empty", "empty_like", "new_empty", "empty_strided", "new_empty_strided", "empty_permuted",
    "resize_", "set_",
})  # fmt: skip


def peak_abs(t: Tensor) -> float:
    """The largest |value| of a non-empty float tensor (inf when one is infinite, NaN when one is
    NaN) in one fused reduction: an activation-sized `isfinite` or `abs` copy per op is most of
    the emulation's cost otherwise."""
    low, high = torch.aminmax(t.detach())
    return float(torch.maximum(-low, high))


def _rounded_scalar(value: float, dtype: torch.dtype) -> float:
    return float(torch.tensor(value, dtype=torch.float64).to(dtype))


@dataclass(frozen=True)
class Overflow:
    op: str  # the aten op, e.g. "bmm"
    module: str  # the innermost module running it ("" outside any, "backward" in the backward)
    peak: float  # the largest |value| of its float32 result


class Lowered(TorchDispatchMode):
    """autocast to `dtype` emulated in float32 (see the module docstring)."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.lowered: WeakIdKeyDictionary = WeakIdKeyDictionary()  # tensors in the format
        self.modules: list[str] = []  # the running modules' names, innermost last
        self.backward = False
        self.first_overflow: Overflow | None = None

    def _round(self, t: Any) -> tuple[Any, bool]:
        """`t` rounded to the format, and whether that overflowed a finite `t`."""
        if not (isinstance(t, Tensor) and t.is_floating_point() and t.dtype != self.dtype):
            return t, False
        if not t.numel():
            return t.to(self.dtype).to(t.dtype), False
        peak, sentinel = peak_abs(t), torch.finfo(t.dtype).max
        if peak == sentinel or (not math.isfinite(peak) and bool((t.abs() == sentinel).any())):
            # A mask sentinel: code that reads tensor.dtype picks finfo(float32).min here,
            # where under real autocast it would read the format's own and stay finite.
            edge = torch.finfo(self.dtype).max
            t = torch.where(t.abs() == sentinel, t.sign() * edge, t)
            peak = peak_abs(t)
        # Rounding is monotonic: the whole tensor overflows where its largest |value| does.
        overflowed = math.isfinite(peak) and not math.isfinite(_rounded_scalar(peak, self.dtype))
        return t.to(self.dtype).to(t.dtype), overflowed

    def _rounded(self, name: str, tree: Any) -> Any:
        """`tree` with every float tensor rounded to the format; the first tensor that was
        finite and is not once rounded is recorded as the overflow (at op `name`)."""
        flat, spec = tree_flatten(tree)
        out = []
        for t in flat:
            rounded, overflowed = self._round(t)
            if overflowed and self.first_overflow is None:
                where = "backward" if self.backward else (self.modules[-1] if self.modules else "")
                self.first_overflow = Overflow(name, where, peak_abs(t))
            out.append(rounded)
        return spec.unflatten(out)

    def _mark(self, t: Any) -> Any:
        if isinstance(t, Tensor) and t.is_floating_point():
            self.lowered[t] = True
        return t

    def _in_format(self, args: Any, kwargs: Any) -> bool:
        floats = [
            a for a in tree_flatten((args, kwargs))[0]
            if isinstance(a, Tensor) and a.is_floating_point() and a.dim() > 0
        ]  # fmt: skip
        return bool(floats) and all(a in self.lowered for a in floats)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in FLOAT32_OPS:
            return func(*args, **kwargs)
        lower = name in LOWER_PRECISION_OPS
        if not lower and not self._in_format(args, kwargs):
            return func(*args, **kwargs)
        if (
            func.is_view
            or name in ALLOCATING_OPS
            or not any(
                isinstance(a, Tensor) and a.is_floating_point() for a in tree_flatten(args)[0]
            )
        ):
            return tree_map(self._mark, func(*args, **kwargs))
        if lower:  # autocast casts the inputs: a value beyond the format overflows right there
            args, kwargs = self._rounded(name, (args, kwargs))
        out = func(*args, **kwargs)
        rounded = self._rounded(name, out)
        if func._schema.is_mutable:  # in place: the mutated input is the result
            for before, after in zip(tree_flatten(out)[0], tree_flatten(rounded)[0], strict=True):
                if isinstance(before, Tensor) and before is not after:
                    before.copy_(after)
            rounded = out
        return tree_map(self._mark, rounded)

    @contextmanager
    def tracking(self, model: nn.Module) -> Iterator[None]:
        """Name the module running each op (forward pre/post hooks), removed on exit."""
        from nndiag.core.hooks import module_names

        names = module_names(model)

        def enter(module: nn.Module, _args: Any) -> None:
            self.modules.append(names[module])

        def leave(module: nn.Module, _args: Any, _output: Any) -> None:
            if self.modules:
                self.modules.pop()

        handles = []
        try:
            for module in model.modules():
                handles.append(module.register_forward_pre_hook(enter))
                handles.append(module.register_forward_hook(leave))
            yield
        finally:
            for handle in handles:
                handle.remove()
