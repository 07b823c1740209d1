"""A Hugging Face TrainerCallback that checks the Trainer's own training code when training
begins, and stops the run before its first step on findings at or above `fail_on`:

    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[NndiagTrainerCallback()])

What is used from your code: the Trainer's `compute_loss(model, batch)` is the loss (a subclass's
override too), the optimizer the Trainer created (its class, learning rate, weight decay and
parameter groups, from `args.optim` or `create_optimizer`), the train dataloader's batches as the
Trainer builds them, and `args.bf16` / `args.fp16` as the precision. The callback finds the
Trainer that holds it when training begins; pass `trainer=` to name it. Your model, optimizer
and data are never modified; on several processes each checks its own data and the main one
prints. Needs `transformers` and `accelerate` (`pip install nndiag[huggingface]`).
"""

from __future__ import annotations

import copy
import gc
import sys
import warnings
from collections.abc import Iterable
from typing import Any, TextIO

import torch
from transformers import Trainer, TrainerCallback

from nndiag.core.context import Definition
from nndiag.core.optimizers import rebuilt
from nndiag.integrations import QUICK_PROBES, precision_options, summary, verdict
from nndiag.report import Report


def _unwrapped(optimizer: Any) -> torch.optim.Optimizer:
    """Accelerate wraps the Trainer's optimizer: the torch optimizer inside."""
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer
    return optimizer


def _holding(callback: TrainerCallback) -> Trainer | None:
    """The Trainer whose callbacks include `callback` (some objects warn when their class is
    read: torch's deprecated reduce_op)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            if isinstance(obj, Trainer) and callback in obj.callback_handler.callbacks:
                return obj
    return None


def definition(trainer: Trainer, model: Any, optimizer: Any, loader: Any) -> Definition:
    """The Trainer's training code as a model definition (see the module docstring)."""

    def training_step(copy_model: Any, batch: Any) -> Any:
        # compute_loss may pop "labels" from what it is given: each call gets its own mapping.
        return trainer.compute_loss(copy_model, copy.copy(batch))

    torch_optimizer = _unwrapped(optimizer if optimizer is not None else trainer.optimizer)
    return Definition(
        make_loader=lambda: loader,
        training_step=training_step,
        optimizer_for=rebuilt(torch_optimizer, model),
        optimizer_name=f"{type(torch_optimizer).__name__} (the Trainer's, args.optim = "
        f"{trainer.args.optim})",
        notes=("checked your Trainer's compute_loss, optimizer and train dataloader",),
    )


class NndiagTrainerCallback(TrainerCallback):
    """Check the model when training begins; raise CheckFailed (the findings block) to stop."""

    def __init__(
        self,
        probes: Iterable[str] | None = QUICK_PROBES,
        fail_on: str = "error",
        strict: bool = False,
        trainer: Trainer | None = None,
        stream: TextIO | None = None,
        **options: Any,
    ) -> None:
        self.probes = list(probes) if probes is not None else None
        self.fail_on, self.strict, self.options = fail_on, strict, options
        self.trainer, self.stream = trainer, stream
        self.report: Report | None = None

    def on_train_begin(
        self,
        args: Any,
        state: Any,
        control: Any,
        model: Any = None,
        optimizer: Any = None,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        from nndiag.api import check_definition

        trainer = self.trainer or _holding(self)
        if trainer is None:
            raise RuntimeError("NndiagTrainerCallback: pass trainer= (no Trainer holds it)")
        precision = "bf16-mixed" if args.bf16 else ("16-mixed" if args.fp16 else "32")
        self.report = check_definition(
            model,
            definition(trainer, model, optimizer, train_dataloader),
            probes=self.probes,
            device=str(next(model.parameters()).device),
            **{**precision_options(precision), **self.options},
        )
        if state.is_world_process_zero:
            print(summary(self.report), file=self.stream or sys.stdout)
        verdict(self.report, self.fail_on, self.strict)
