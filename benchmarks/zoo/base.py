"""What the zoo hands to the registry sweep: an architecture, its data and its loss."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
STAND_IN = Path(__file__).resolve().parent / "stand_in"  # the few torchvision names timm imports
RESULTS = ROOT / "benchmarks" / "results"

Batch = tuple[Any, torch.Tensor]


@dataclass(frozen=True)
class Arch:
    name: str  # unique across the zoo: "timm/levit_128s", "transformers/gpt2", "project/nanogpt"
    family: str  # timm's module, transformers' model type, the project
    domain: str  # vision, text, seq2seq, audio, moe, state-space, graph, generative, tabular, dense
    build: Callable[[], nn.Module]
    make_batch: Callable[[int], Batch]  # learnable: targets follow a fixed rule of the inputs
    loss_fn: Callable[[Any, torch.Tensor], torch.Tensor] | None = None
    batch_size: int = 16

    @property
    def source(self) -> str:
        return self.name.split("/", 1)[0]


class Excluded(Exception):
    """An architecture that cannot take part, with the reason the table lists."""


def use_stand_in_torchvision() -> None:
    """timm imports a few torchvision names; torchvision's wheels do not load against the CPU
    torch here (and would pull a CUDA torch), so a stand-in provides them. transformers decides
    first that no torchvision is installed (it caches the answer)."""
    try:
        from transformers.utils import import_utils

        import_utils.is_torchvision_available()
    except ImportError:
        pass
    if str(STAND_IN) not in sys.path:
        sys.path.insert(0, str(STAND_IN))


def logits_of(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict) or hasattr(outputs, "logits"):
        found = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        if found is not None:
            return found
    if isinstance(outputs, (tuple, list)):
        return logits_of(outputs[0])
    raise TypeError(f"no logits in {type(outputs).__name__}")


def token_cross_entropy(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over every position (class axis last), or per example."""
    logits = logits_of(outputs)
    return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def dense_cross_entropy(outputs: Any, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (batch, classes, H, W) logits against (batch, H, W) labels."""
    return nn.functional.cross_entropy(logits_of(outputs), targets)
