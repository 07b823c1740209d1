"""One training step with optional mixed precision, shared by the probes that train a copy, and
the copy a few steps into training that confirms verdicts about parameters zero at init."""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from nndiag.config import Amp
from nndiag.core.context import Context
from nndiag.core.contract import as_logits, call_model
from nndiag.core.reduce import mean
from nndiag.errors import ContractError

AMP_DTYPES = {Amp.BF16: torch.bfloat16, Amp.FP16: torch.float16}
# Optimizer steps on the fixed batch before a "zero at init" verdict is confirmed. One step moves
# a zero gate (ReZero α, LoRA's B, a zero output layer) off zero; the gradients behind it flow
# from the second step on, so three steps leave a margin for optimizers with warm-up behaviour.
CONFIRMATION_STEPS = 3


@dataclass(frozen=True)
class Step:
    loss: float
    logits: Tensor  # detached
    applied: bool  # False when the fp16 GradScaler skipped the update (inf/NaN gradients)


@dataclass
class Trainer:
    """zero_grad, forward under autocast, backward (scaled for fp16), optimizer step."""

    ctx: Context
    model: nn.Module
    optimizer: torch.optim.Optimizer
    amp: Amp = Amp.NONE
    scaler: Any = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.amp is Amp.FP16:
            self.scaler = torch.amp.GradScaler(self.ctx.device.type)

    def autocast(self) -> Any:
        if self.amp is Amp.NONE:
            return nullcontext()
        return torch.autocast(device_type=self.ctx.device.type, dtype=AMP_DTYPES[self.amp])

    def step(self, inputs: Any, targets: Tensor) -> Step:
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            outputs = call_model(self.model, inputs)
            loss = self.ctx.loss(outputs, targets)
        value = mean(self.ctx.reduce, float(loss.detach()))  # the same on every rank
        logits = as_logits(outputs).detach()
        if not math.isfinite(value) or not loss.requires_grad:
            return Step(value, logits, applied=False)
        if self.scaler is None:
            loss.backward()
            self.ctx.reduce.average_gradients(self.model)
            self.optimizer.step()
            return Step(value, logits, applied=True)
        scale = self.scaler.get_scale()
        self.scaler.scale(loss).backward()
        self.ctx.reduce.average_gradients(self.model)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # GradScaler lowers its scale exactly when it found inf/NaN and skipped optimizer.step().
        return Step(value, logits, applied=self.scaler.get_scale() >= scale)

    def evaluate(self, inputs: Any, targets: Tensor) -> tuple[float, Tensor]:
        """The loss and logits without an update (the measurement after the last step)."""
        with torch.no_grad(), self.autocast():
            outputs = call_model(self.model, inputs)
            loss = mean(self.ctx.reduce, float(self.ctx.loss(outputs, targets)))
            return loss, as_logits(outputs).detach()


def new_trainer(ctx: Context, lr: float | None) -> Trainer:
    """A fresh copy of the user's model in train mode with its own optimizer."""
    model = ctx.fresh_model().train()
    return Trainer(ctx, model, ctx.optimizer(model, lr), ctx.options.amp)


def check_drivable(optimizer: torch.optim.Optimizer) -> None:
    """Training probes set each group's "lr" and call step() without a closure."""
    if not all("lr" in group for group in optimizer.param_groups):
        raise ContractError(
            f"{type(optimizer).__name__} has parameter groups without an 'lr': the training "
            "probes cannot set its learning rate"
        )
    if isinstance(optimizer, torch.optim.LBFGS):
        raise ContractError(
            "LBFGS needs a closure that re-evaluates the loss: the training probes take plain "
            "optimizer steps; check with Adam or SGD (make_optimizer) instead"
        )


@dataclass(frozen=True)
class StepTiming:
    seconds: float  # one optimizer step on the fixed batch, after a warm-up step
    model: nn.Module  # the copy after CONFIRMATION_STEPS steps


def after_steps(ctx: Context) -> StepTiming:
    """A copy trained CONFIRMATION_STEPS steps on the fixed batch with the user's optimizer (or
    Adam at 1e-3), computed once per check; its timing prices the training probes."""
    cached = ctx.memo.get("after_steps")
    if isinstance(cached, StepTiming):
        return cached
    trainer = new_trainer(ctx, None)
    times = []
    for _ in range(CONFIRMATION_STEPS):
        started = time.perf_counter()
        trainer.step(*ctx.batch)
        _synchronize(ctx.device)
        times.append(time.perf_counter() - started)
    seconds = min(times[1:] or times)
    # The budget plan must be the same on every rank (the slowest one's): it sets step counts.
    seconds = float(ctx.reduce.max(torch.tensor([seconds], dtype=torch.float64))[0])
    timing = StepTiming(seconds, trainer.model)
    ctx.memo["after_steps"] = timing
    return timing


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
