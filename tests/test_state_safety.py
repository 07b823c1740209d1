"""Every probe leaves the user's model bit-identical and the global RNG states unchanged."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from nndiag.api import check, run_probe
from nndiag.probes import builtin, spec

from models import class_batch
from probing import config, context


class Everything(nn.Module):
    """BatchNorm (running stats), dropout, a frozen layer, an in-place ReLU, a functional tanh."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen = nn.Linear(8, 16).requires_grad_(False)
        self.norm = nn.BatchNorm1d(16)
        self.act = nn.ReLU(inplace=True)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.drop(torch.tanh(self.act(self.norm(self.frozen(x))))))


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": {n: p.grad for n, p in model.named_parameters()},
        "training": {n: m.training for n, m in model.named_modules()},
        "hooks": {
            n: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for n, m in model.named_modules()
        },
    }


def rng_states() -> tuple:
    return (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy())


def assert_same(before: dict, after: dict) -> None:
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key
    for key in ("requires_grad", "training", "hooks"):
        assert before[key] == after[key], key
    assert all(g is None for g in after["grads"].values())


@pytest.mark.parametrize("name", builtin())
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_probe_leaves_model_and_rng_untouched(name: str, mode: str) -> None:
    model = Everything().train(mode == "train")
    ctx = context(model, class_batch())
    before, rng = snapshot(model), rng_states()
    result = run_probe(spec(name), ctx, config(name))
    assert result.status.value == "ok", result.error
    assert_same(before, snapshot(model))
    assert torch.is_grad_enabled() and torch.get_default_dtype() == torch.float32
    after = rng_states()
    assert torch.equal(rng[0], after[0]) and rng[1] == after[1] and (rng[2] == after[2]).all()


def test_check_api_restores_global_rng() -> None:
    model, batch = Everything(), class_batch()
    torch.manual_seed(123)
    random.seed(5)
    state = rng_states()
    before = snapshot(model)
    check(model, batch=batch, device="cpu", seed=7)
    after = rng_states()
    assert torch.equal(state[0], after[0]) and state[1] == after[1]
    assert_same(before, snapshot(model))
