"""A Lightning Callback that checks the LightningModule on the train loader when training
starts, and stops the run on findings at or above `fail_on`:

    trainer = L.Trainer(callbacks=[NndiagCallback()])

The module is never modified (nndiag checks copies); its forward() is the model, `loss_fn` the
loss (default: cross-entropy for class targets, MSE for float ones). Needs `lightning`
(`pip install nndiag[lightning]`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning.pytorch as pl

import nndiag
from nndiag.integrations import QUICK_PROBES, first_two, pairs, verdict
from nndiag.report import Report


class NndiagCallback(pl.Callback):
    def __init__(
        self,
        probes: Iterable[str] | None = QUICK_PROBES,
        fail_on: str = "error",
        strict: bool = False,
        loss_fn: Callable[[Any, Any], Any] | None = None,
        to_pair: Callable[[Any], tuple[Any, Any]] = first_two,
        **options: Any,
    ) -> None:
        self.probes = list(probes) if probes is not None else None
        self.fail_on, self.strict = fail_on, strict
        self.loss_fn, self.to_pair, self.options = loss_fn, to_pair, options
        self.report: Report | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.report = nndiag.check(
            pl_module,
            make_loader=pairs(trainer.train_dataloader or [], self.to_pair),
            loss_fn=self.loss_fn,
            probes=self.probes,
            device=str(pl_module.device),
            **self.options,
        )
        verdict(self.report, self.fail_on, self.strict)
