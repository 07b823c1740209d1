"""One training step with optional mixed precision, shared by the probes that train a copy, and
the copy a few steps into training that confirms verdicts about parameters zero at init."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from nndiag.config import Amp
from nndiag.core.context import Context
from nndiag.core.reduce import mean
from nndiag.core.state import preserved_rng
from nndiag.core.steps import StepRun
from nndiag.core.tensors import Arguments
from nndiag.errors import ContractError

Substitute = Callable[[Arguments], Arguments]

AMP_DTYPES = {Amp.BF16: torch.bfloat16, Amp.FP16: torch.float16}
# Optimizer steps on the fixed batch before a "zero at init" verdict is confirmed. One step moves
# a zero gate (ReZero α, LoRA's B, a zero output layer) off zero; the gradients behind it flow
# from the second step on, so three steps leave a margin for optimizers with warm-up behaviour.
CONFIRMATION_STEPS = 3
CONFIRMATION_SEED = 7919  # added to the check's seed: the confirmation run's own random stream


@dataclass(frozen=True)
class Step:
    loss: float
    outputs: Any  # the root module's outputs in this step (not detached: read, do not keep)
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

    def step(self, batch: Any, substitute: Substitute | None = None) -> Step:
        """One optimizer step on `batch` through the training step (with the root module's
        inputs replaced by `substitute`, for a zeroed-input baseline)."""
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            run = self.ctx.run_step(self.model, batch, substitute)
        loss = run.loss.reshape(())
        value = mean(self.ctx.reduce, float(loss.detach()))  # the same on every rank
        if not math.isfinite(value) or not loss.requires_grad:
            return Step(value, run.outputs, applied=False)
        if self.scaler is None:
            loss.backward()
            self.ctx.reduce.average_gradients(self.model)
            self.optimizer.step()
            return Step(value, run.outputs, applied=True)
        scale = self.scaler.get_scale()
        self.scaler.scale(loss).backward()
        self.ctx.reduce.average_gradients(self.model)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # GradScaler lowers its scale exactly when it found inf/NaN and skipped optimizer.step().
        return Step(value, run.outputs, applied=self.scaler.get_scale() >= scale)

    def evaluate(self, batch: Any, substitute: Substitute | None = None) -> StepRun:
        """The step without an update (the measurement after the last step)."""
        with torch.no_grad(), self.autocast():
            return self.ctx.run_step(self.model, batch, substitute)


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
class Confirmation:
    """A copy a few optimizer steps into training, and what those steps showed.

    Errors about parameters are confirmed by what training does (docs/architecture.md): a
    parameter is `no-gradient` only if it got no non-zero gradient in any step and never moved.
    The steps run in train mode, each drawing dropout, LayerDrop and stochastic depth anew, so a
    layer skipped by chance in one step is seen in another.
    """

    seconds: float  # one optimizer step on the fixed batch (the fastest after the first)
    model: nn.Module  # the copy after CONFIRMATION_STEPS steps
    got_gradient: frozenset[str]  # parameter names (every alias) with a non-zero gradient
    moved: frozenset[str]  # parameter names (every alias) whose values changed


def after_steps(ctx: Context) -> Confirmation:
    """A copy trained CONFIRMATION_STEPS steps on the fixed batch with the user's optimizer (or
    Adam at 1e-3), in train mode, computed once per check under its own seed (so it does not
    depend on which probe asks first); its timing prices the training probes."""
    cached = ctx.memo.get("after_steps")
    if isinstance(cached, Confirmation):
        return cached
    with preserved_rng():
        torch.manual_seed(ctx.options.seed + CONFIRMATION_SEED)
        trainer = new_trainer(ctx, None)
        names = _aliases(trainer.model)
        before = _checksums(names)
        flowed = torch.zeros(len(names), dtype=torch.bool)
        times = []
        for _ in range(CONFIRMATION_STEPS):
            started = time.perf_counter()
            trainer.step(ctx.batch)
            _synchronize(ctx.device)
            times.append(time.perf_counter() - started)
            flowed |= _nonzero_gradients(names)
    # One collective each: a shard with a non-zero entry on any rank means the tensor has one.
    flowed = ctx.reduce.max(flowed.double()) > 0
    moved = ctx.reduce.max((_checksums(names) != before).any(dim=1).double()) > 0
    seconds = min(times[1:] or times)
    # The budget plan must be the same on every rank (the slowest one's): it sets step counts.
    seconds = float(ctx.reduce.max(torch.tensor([seconds], dtype=torch.float64))[0])
    confirmation = Confirmation(
        seconds,
        trainer.model,
        frozenset(n for (n, _), f in zip(names, flowed.tolist(), strict=True) if f),
        frozenset(n for (n, _), m in zip(names, moved.tolist(), strict=True) if m),
    )
    ctx.memo["after_steps"] = confirmation
    return confirmation


def _aliases(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Every name of every parameter (tied weights under each of their names)."""
    return list(model.named_parameters(remove_duplicate=False))


def _checksums(names: list[tuple[str, nn.Parameter]]) -> Tensor:
    """(sum, sum of squares) per parameter in float64: a step that moves a tensor changes them."""
    from nndiag.distributed import local

    rows = []
    for _, p in names:
        t = local(p).detach()
        t = torch.view_as_real(t) if t.is_complex() else t  # both parts: a step may move either
        rows.append(torch.stack([t.double().sum(), t.double().pow(2).sum()]))
    return torch.stack(rows).cpu() if rows else torch.zeros(0, 2, dtype=torch.float64)


def _nonzero_gradients(names: list[tuple[str, nn.Parameter]]) -> Tensor:
    from nndiag.distributed import local

    return torch.tensor(
        [p.grad is not None and bool((local(p.grad) != 0).any()) for _, p in names],
        dtype=torch.bool,
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
