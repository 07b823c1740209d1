"""A Hugging Face TrainerCallback that checks the model on the train dataloader when training
begins, and stops the run on findings at or above `fail_on`:

    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[NndiagTrainerCallback()])

Batches are dicts as the Trainer builds them; the model's own loss (`outputs.loss`, computed
from the batch's `labels`) is the loss. The model is never modified (nndiag checks copies).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from transformers import TrainerCallback

import nndiag
from nndiag.integrations import QUICK_PROBES, pairs, verdict
from nndiag.report import Report


def with_labels(batch: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The whole batch goes in (the model computes its loss from `labels`); the labels are the
    targets nndiag's data probe describes."""
    return dict(batch), batch["labels"]


def model_loss(outputs: Any, _targets: Any) -> Any:
    return outputs.loss


class NndiagTrainerCallback(TrainerCallback):
    def __init__(
        self,
        probes: Iterable[str] | None = QUICK_PROBES,
        fail_on: str = "error",
        strict: bool = False,
        **options: Any,
    ) -> None:
        self.probes = list(probes) if probes is not None else None
        self.fail_on, self.strict, self.options = fail_on, strict, options
        self.report: Report | None = None

    def on_train_begin(
        self,
        args: Any,
        state: Any,
        control: Any,
        model: Any = None,
        train_dataloader: Any = None,
        **kwargs: Any,
    ) -> None:
        device = str(next(model.parameters()).device)
        self.report = nndiag.check(
            model,
            make_loader=pairs(train_dataloader, with_labels),
            loss_fn=model_loss,
            probes=self.probes,
            device=device,
            **self.options,
        )
        verdict(self.report, self.fail_on, self.strict)
