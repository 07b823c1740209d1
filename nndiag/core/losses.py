"""What a loss really does, observed rather than guessed from names, and its chance baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from nndiag.core.contract import as_logits, call_model
from nndiag.core.reduce import LocalReducer, Reducer, mean

LOG_SOFTMAX_LOSSES = frozenset({"cross_entropy", "log_softmax"})
LOGIT_SIGMOID_LOSSES = frozenset({"binary_cross_entropy_with_logits"})
CE_LOSSES = frozenset({"cross_entropy"})
MSE_LOSSES = frozenset({"mse_loss"})
ELEMENTWISE_LOSSES = frozenset({
    "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
    "binary_cross_entropy_with_logits", "soft_margin_loss", "poisson_nll_loss", "gaussian_nll_loss",
})  # fmt: skip
BINARY_OPS = frozenset({
    "sub", "__sub__", "__rsub__", "add", "__add__", "__radd__", "mul", "__mul__", "__rmul__",
    "div", "__truediv__", "__rtruediv__", "pow", "__pow__",
})  # fmt: skip


@dataclass
class LossObserver(TorchFunctionMode):
    """Records the torch functions a loss calls and the calls that broadcast two shapes."""

    calls: set[str] = field(default_factory=set)
    broadcasts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        self.calls.add(name)
        pair = [a for a in args[:2] if isinstance(a, Tensor) and a.dim() > 0]
        if len(pair) == 2 and pair[0].shape != pair[1].shape:
            grew = isinstance(out, Tensor) and out.numel() > max(pair[0].numel(), pair[1].numel())
            if name in ELEMENTWISE_LOSSES or (name in BINARY_OPS and grew):
                self.broadcasts.append(f"{name}({list(pair[0].shape)}, {list(pair[1].shape)})")
        return out

    @property
    def loss_calls(self) -> list[str]:
        suffixes = ("_loss", "softmax", "cross_entropy", "entropy_with_logits")
        return sorted(n for n in self.calls if n.endswith(suffixes))


@dataclass(frozen=True)
class Baseline:
    """The loss of an uninformed predictor: ln C for C-way cross-entropy, the target variance for
    MSE (the loss of predicting the mean); NaN with kind 'unknown' for other losses."""

    value: float
    kind: str

    @property
    def known(self) -> bool:
        return math.isfinite(self.value) and self.value > 0


def chance_baseline(
    calls: set[str], logits: Tensor, targets: Tensor, reduce: Reducer | None = None
) -> Baseline:
    """Under torchrun, `reduce` makes the target variance the whole batch's, not a rank's slice."""
    if calls & CE_LOSSES and logits.dim() >= 1:
        return Baseline(math.log(logits.shape[-1]), "ln C (cross-entropy)")
    if calls & MSE_LOSSES and targets.numel() > 1:
        reduce = reduce or LocalReducer()
        y = targets.double().flatten()
        sums = reduce.sum(torch.stack([y.sum(), y.pow(2).sum(), torch.tensor(float(y.numel()))]))
        total, squares, count = sums.tolist()
        variance = (squares - total * total / count) / (count - 1)  # unbiased, as Tensor.var
        return Baseline(variance, "target variance (MSE)")
    return Baseline(math.nan, "unknown")


def class_axis(logits: Tensor, targets: Tensor) -> int | None:
    """The axis of the logits that holds the classes of integer targets: the last ((batch, ...,
    classes), as language models), or 1 ((batch, classes, H, W), as cross_entropy takes dense
    outputs); None when the shapes do not pair up."""
    if targets.is_floating_point() or logits.dim() == 0:
        return None
    if logits.shape[:-1] == targets.shape:
        return logits.dim() - 1
    dense = logits.dim() == targets.dim() + 1 and logits.dim() > 2
    if dense and logits.shape[:1] + logits.shape[2:] == targets.shape:
        return 1
    return None


def accuracy(logits: Tensor, targets: Tensor, ignore_index: int) -> float:
    """Share of targets whose class is the argmax (labels equal to ignore_index skipped); NaN
    when the outputs are not class scores for these targets."""
    axis = class_axis(logits, targets)
    if axis is None:
        return math.nan
    keep = targets != ignore_index
    if not bool(keep.any()):
        return math.nan
    hits = logits.detach().argmax(dim=axis) == targets
    return float(hits[keep].float().mean())


def loss_and_baseline(
    model: nn.Module, inputs: Any, targets: Tensor, loss_fn: Any, reduce: Reducer
) -> tuple[float, Baseline]:
    """A model's loss on a batch (no gradient) and the chance baseline of that loss, observed;
    both over the whole batch when the ranks of a torchrun each hold a slice."""
    with torch.no_grad():
        outputs = call_model(model, inputs)
        with LossObserver() as observer:
            loss = mean(reduce, float(loss_fn(outputs, targets)))
    return loss, chance_baseline(observer.calls, as_logits(outputs), targets, reduce)
