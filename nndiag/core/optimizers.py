"""Your optimizer, on nndiag's copies: an optimizer instance you already built is rebuilt on each
copy with the same class, hyperparameters and parameter groups (matched by parameter name), and
never stepped itself. Lightning's configure_optimizers results are read the same way."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nndiag.errors import ContractError

OptimizerFor = Callable[[nn.Module], torch.optim.Optimizer]


def rebuilt(optimizer: torch.optim.Optimizer, model: nn.Module) -> OptimizerFor:
    """A factory of `optimizer`'s twin on a copy of `model`: each of its parameter groups, with
    its own hyperparameters (lr, momentum, weight decay...), over the copy's parameters of the
    same names. Parameters the optimizer does not hold stay out of it, as in your training."""
    names = {id(p): name for name, p in model.named_parameters(remove_duplicate=False)}
    groups: list[tuple[list[str], dict[str, Any]]] = []
    for group in optimizer.param_groups:
        missing = [p for p in group["params"] if id(p) not in names]
        if missing:
            raise ContractError(
                f"the optimizer holds {len(missing)} tensor(s) that are not parameters of the "
                "model given: build it over model.parameters()"
            )
        settings = {k: v for k, v in group.items() if k != "params"}
        groups.append(([names[id(p)] for p in group["params"]], settings))
    kind = type(optimizer)
    # Each group keeps every setting it has; the constructor gets only the ones it takes (AdamW's
    # defaults hold a key its __init__ does not accept).
    accepted = inspect.signature(kind.__init__).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
    defaults = {k: v for k, v in optimizer.defaults.items() if takes_any or k in accepted}

    def build(copy: nn.Module) -> torch.optim.Optimizer:
        params = dict(copy.named_parameters(remove_duplicate=False))
        param_groups = [
            {"params": [params[n] for n in group_names], **settings}
            for group_names, settings in groups
        ]
        return kind(param_groups, **defaults)

    return build


def first_optimizer(configured: Any) -> tuple[torch.optim.Optimizer, list[str]]:
    """The optimizer of a LightningModule.configure_optimizers() result (an optimizer, a list of
    them, (optimizers, schedulers), a dict with "optimizer", or a list of such dicts), and what
    the report should say about the rest."""
    notes: list[str] = []
    found = _optimizers(configured, notes)
    if not found:
        raise ContractError(
            f"configure_optimizers() returned no optimizer ({type(configured).__name__})"
        )
    if len(found) > 1:
        notes.append(
            f"configure_optimizers() returned {len(found)} optimizers: checked with the first, "
            f"{type(found[0]).__name__}"
        )
    return found[0], notes


def _optimizers(value: Any, notes: list[str]) -> list[torch.optim.Optimizer]:
    if isinstance(value, torch.optim.Optimizer):
        return [value]
    if isinstance(value, dict):
        if value.get("lr_scheduler") is not None:
            notes.append("learning-rate schedulers are not used: each probe sets its own rates")
        return _optimizers(value.get("optimizer"), notes)
    if isinstance(value, (list, tuple)):
        if len(value) == 2 and isinstance(value[0], (list, tuple)) and value[1]:
            notes.append("learning-rate schedulers are not used: each probe sets its own rates")
            return _optimizers(value[0], notes)
        return [opt for item in value for opt in _optimizers(item, notes)]
    return []
