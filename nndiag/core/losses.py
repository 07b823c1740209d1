"""What a loss really does, observed rather than guessed from names, and its chance baseline."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

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


# Functions that apply (log-)softmax to their input, or expect log-probabilities: what they read
# must not be probabilities already.
SOFTMAX_READERS = frozenset({"cross_entropy", "log_softmax", "nll_loss"})
# Losses whose (input, target) arguments tell the chance baseline and the accuracy.
CLASS_LOSS_CALLS = frozenset({"cross_entropy", "nll_loss"})
TARGET_LOSS_CALLS = (
    CLASS_LOSS_CALLS
    | MSE_LOSSES
    | frozenset({"binary_cross_entropy", "binary_cross_entropy_with_logits"})
)


@dataclass(frozen=True)
class LossCall:
    """The first call of a loss function: its input and target (detached), and ignore_index."""

    name: str
    input: Tensor
    target: Tensor
    ignore_index: int = -100


@dataclass
class LossObserver(TorchFunctionMode):
    """Records the torch functions a loss calls, the calls that broadcast two shapes, and the
    first loss call's input and target. Under a training step the model's own forward is not
    the loss: `paused` is set around the root module's forward (watching(model))."""

    calls: set[str] = field(default_factory=set)
    broadcasts: list[str] = field(default_factory=list)
    loss_call: LossCall | None = None
    softmax_reads: dict[str, Tensor] = field(default_factory=dict)  # first input per function
    paused: bool = False

    def __post_init__(self) -> None:
        super().__init__()

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = getattr(func, "__name__", "")
        pair = [a for a in args[:2] if isinstance(a, Tensor) and a.dim() > 0]
        # A model may compute its own loss in forward (Hugging Face models given labels): loss
        # calls count even there.
        self._loss_reads(name, args, kwargs or {}, pair)
        if not self.paused:
            self.calls.add(name)
            self._broadcast(name, pair, out)
        return out

    def _loss_reads(self, name: str, args: Any, kwargs: dict[str, Any], pair: list[Tensor]) -> None:
        """What a softmax reader and the first target loss call read."""
        if name in SOFTMAX_READERS and args and isinstance(args[0], Tensor):
            self.softmax_reads.setdefault(name, args[0].detach())
        if name in TARGET_LOSS_CALLS and self.loss_call is None and len(pair) == 2:
            ignore = int(kwargs.get("ignore_index", -100))
            self.loss_call = LossCall(name, pair[0].detach(), pair[1].detach(), ignore)
            self.calls.add(name)

    def _broadcast(self, name: str, pair: list[Tensor], out: Any) -> None:
        """An elementwise loss, or a binary op whose result outgrew both operands, between two
        tensors of different shapes: broadcasting where the loss meant matching elements."""
        if len(pair) != 2 or pair[0].shape == pair[1].shape:
            return
        grew = isinstance(out, Tensor) and out.numel() > max(pair[0].numel(), pair[1].numel())
        if name in ELEMENTWISE_LOSSES or (name in BINARY_OPS and grew):
            self.broadcasts.append(f"{name}({list(pair[0].shape)}, {list(pair[1].shape)})")

    @property
    def loss_calls(self) -> list[str]:
        suffixes = ("_loss", "softmax", "cross_entropy", "entropy_with_logits")
        return sorted(n for n in self.calls if n.endswith(suffixes))

    @contextmanager
    def watching(self, model: nn.Module) -> Iterator[LossObserver]:
        """Observe a whole training step but the root module's forward (the model's softmax is
        not the loss's): paused from its forward pre-hook to its forward hook."""

        def enter(_module: nn.Module, _args: Any) -> None:
            self.paused = True

        def leave(_module: nn.Module, _args: Any, _output: Any) -> None:
            self.paused = False

        handles = [
            model.register_forward_pre_hook(enter, prepend=True),
            model.register_forward_hook(leave),
        ]
        try:
            with self:
                yield self
        finally:
            for handle in handles:
                handle.remove()


class BaselineKind(StrEnum):
    """Which uninformed predictor the baseline is the loss of (the value is its display)."""

    CHANCE = "ln C (cross-entropy)"
    VARIANCE = "target variance (MSE)"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Baseline:
    """The loss of an uninformed predictor: ln C for C-way cross-entropy, the target variance for
    MSE (the loss of predicting the mean); NaN with kind 'unknown' for other losses."""

    value: float
    kind: BaselineKind

    @property
    def known(self) -> bool:
        return math.isfinite(self.value) and self.value > 0


def chance_baseline(observer: LossObserver, reduce: Reducer | None = None) -> Baseline:
    """From the loss call the step made: ln C for cross-entropy or NLL over C classes (the
    input's class axis, dim 1, or its only axis: uniform predictions), the target variance for
    MSE (the loss of the best constant prediction, the mean: min_c mean((y - c)²) = var(y),
    the biased variance). Under torchrun `reduce` makes the variance the whole batch's, not a
    rank's slice."""
    call = observer.loss_call
    if call is None:
        return Baseline(math.nan, BaselineKind.UNKNOWN)
    if call.name in ("cross_entropy", "nll_loss") and call.input.dim() >= 1:
        classes = call.input.shape[1] if call.input.dim() >= 2 else call.input.shape[0]
        return Baseline(math.log(classes), BaselineKind.CHANCE)
    if call.name in MSE_LOSSES and call.target.numel() > 1:
        reduce = reduce or LocalReducer()
        y = call.target.double().flatten()
        sums = reduce.sum(torch.stack([y.sum(), y.pow(2).sum(), torch.tensor(float(y.numel()))]))
        total, squares, count = sums.tolist()
        variance = (squares - total * total / count) / count
        return Baseline(variance, BaselineKind.VARIANCE)
    return Baseline(math.nan, BaselineKind.UNKNOWN)


def accuracy(call: LossCall | None) -> float:
    """Share of a classification loss call's targets whose class is the argmax of its input
    (labels equal to its ignore_index skipped); NaN for other losses."""
    if call is None or call.name not in CLASS_LOSS_CALLS:
        return math.nan
    logits, targets = call.input, call.target
    if targets.is_floating_point():
        return math.nan
    axis = 1 if logits.dim() >= 2 else 0
    if logits.dim() != targets.dim() + 1:
        return math.nan
    keep = targets != call.ignore_index
    if not bool(keep.any()):
        return math.nan
    hits = logits.argmax(dim=axis) == targets
    return float(hits[keep].float().mean())


def observed_step(ctx: Any, model: nn.Module, batch: Any = None) -> tuple[float, LossObserver]:
    """The step's loss (no gradient; the whole batch's mean under torchrun) and what its loss
    called."""
    observer = LossObserver()
    with torch.no_grad(), observer.watching(model):
        run = ctx.run_step(model, batch)
    return mean(ctx.reduce, float(run.loss.detach().float().reshape(()))), observer
