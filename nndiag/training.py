"""One training step with optional mixed precision, shared by the probes that train a copy."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from nndiag.config import Amp
from nndiag.context import Context, as_logits, call_model
from nndiag.report import ProbeResult, Status

AMP_DTYPES = {Amp.BF16: torch.bfloat16, Amp.FP16: torch.float16}


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
        value = float(loss.detach())
        logits = as_logits(outputs).detach()
        if not math.isfinite(value):
            return Step(value, logits, applied=False)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
            return Step(value, logits, applied=True)
        scale = self.scaler.get_scale()
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # GradScaler lowers its scale exactly when it found inf/NaN and skipped optimizer.step().
        return Step(value, logits, applied=self.scaler.get_scale() >= scale)


def new_trainer(ctx: Context, lr: float | None) -> Trainer:
    """A fresh copy of the user's model in train mode with its own optimizer."""
    model = ctx.fresh_model().train()
    return Trainer(ctx, model, ctx.optimizer(model, lr), ctx.options.amp)


def skipped_when_frozen(ctx: Context, name: str) -> ProbeResult | None:
    """Training probes have nothing to train when every parameter is frozen: skip, saying why."""
    if any(p.requires_grad for p in ctx.model.parameters()):
        return None
    reason = "every parameter has requires_grad=False: nothing to train"
    return ProbeResult(name, Status.SKIPPED, error=reason)
