"""A Lightning Callback that checks the LightningModule's own training code when training starts,
and stops the run before its first step on findings at or above `fail_on`:

    trainer = L.Trainer(callbacks=[NndiagCallback()])

What is used from your code: `training_step(batch, batch_idx)` is the loss (on nndiag's copies,
with `self.log` silenced there), `configure_optimizers()` the optimizer and its parameter groups
(the first optimizer when there are several; learning-rate schedulers are not used: each probe
sets its own rates), the train dataloader's batches as they are, and the Trainer's precision
(`16-mixed`, `bf16-mixed`) for the training probes and the precision probe. Your module, its
optimizer and its data are never modified. Under DDP every rank checks its own data and rank 0
prints. Needs `lightning` (`pip install nndiag[lightning]`).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from contextlib import contextmanager
from typing import Any, TextIO

import lightning.pytorch as pl
import torch

from nndiag.core.context import Definition
from nndiag.core.optimizers import first_optimizer
from nndiag.integrations import QUICK_PROBES, precision_options, summary, verdict
from nndiag.report import Report


@contextmanager
def _silent_logging(module: pl.LightningModule) -> Any:
    """`self.log` on a copy has no trainer to log to: a no-op while nndiag runs the step."""
    module.log, module.log_dict = (lambda *_a, **_k: None), (lambda *_a, **_k: None)  # type: ignore[method-assign]
    try:
        yield
    finally:
        del module.log, module.log_dict


def training_step(model: Any, batch: Any) -> Any:
    """The module's own training_step, as Lightning calls it (batch_idx 0)."""
    with _silent_logging(model):
        return model.training_step(batch, 0)


def _configured(module: pl.LightningModule, trainer: pl.Trainer) -> Any:
    """configure_optimizers() of a copy; one that reads self.trainer (a scheduler sized by
    estimated_stepping_batches) gets the real trainer to read."""
    try:
        return module.configure_optimizers()
    except (AttributeError, RuntimeError, ValueError):
        module._trainer = trainer
        try:
            return module.configure_optimizers()
        finally:
            module._trainer = None


def definition(trainer: pl.Trainer, module: pl.LightningModule) -> Definition:
    """The module's training code as a model definition (see the module docstring)."""
    optimizer, notes = first_optimizer(_configured(copy.deepcopy(module), trainer))

    def optimizer_for(model: Any) -> torch.optim.Optimizer:
        return first_optimizer(_configured(model, trainer))[0]

    loader = trainer.train_dataloader
    if loader is None:
        raise RuntimeError("the Trainer has no train dataloader yet")
    return Definition(
        make_loader=lambda: loader,
        training_step=training_step,
        optimizer_for=optimizer_for,
        optimizer_name=f"{type(optimizer).__name__} (configure_optimizers)",
        notes=(
            "checked your LightningModule's training_step, configure_optimizers and train "
            "dataloader",
            *notes,
        ),
    )


class NndiagCallback(pl.Callback):
    """Check the module when training starts; raise CheckFailed (the findings block) to stop."""

    def __init__(
        self,
        probes: Iterable[str] | None = QUICK_PROBES,
        fail_on: str = "error",
        strict: bool = False,
        stream: TextIO | None = None,
        **options: Any,
    ) -> None:
        self.probes = list(probes) if probes is not None else None
        self.fail_on, self.strict, self.options = fail_on, strict, options
        self.stream = stream
        self.report: Report | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from nndiag.api import check_definition

        self.report = check_definition(
            pl_module,
            definition(trainer, pl_module),
            probes=self.probes,
            device=str(pl_module.device),
            **{**precision_options(str(trainer.precision)), **self.options},
        )
        if trainer.is_global_zero:
            print(summary(self.report), file=self.stream or sys.stdout)
        verdict(self.report, self.fail_on, self.strict)
