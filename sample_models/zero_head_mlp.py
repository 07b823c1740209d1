"""Healthy by design: an MLP whose output layer is initialised to zero.

At init the output is zero whatever the input (the loss is exactly chance) and every layer below
the head gets exactly zero gradient; after one step the head moves and gradients flow.
"""

from torch import nn

from nndiag.synthetic import teacher_classification


def build_model() -> nn.Module:
    model = nn.Sequential(
        nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 5)
    )
    nn.init.zeros_(model[4].weight)
    nn.init.zeros_(model[4].bias)
    return model


def make_batch(batch_size: int = 32):
    return teacher_classification(batch_size, (20,), 5)
