"""Options shared by the CLI and the Python API (no heavy imports)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from nndiag.errors import UsageError


class Task(StrEnum):
    AUTO = "auto"
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class Amp(StrEnum):
    NONE = "none"
    BF16 = "bf16"
    FP16 = "fp16"


class RangeMode(StrEnum):
    EXP = "exp"
    LINEAR = "linear"


class FailOn(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NEVER = "never"


_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def parse_device(text: str) -> str:
    """Validate a device name at the boundary: auto, cpu, cuda, cuda:N or mps."""
    value = text.strip().lower()
    if not _DEVICE_PATTERN.match(value):
        raise UsageError(f"invalid --device {text!r}: use auto, cpu, cuda, cuda:N or mps")
    return value


def parse_shape(text: str) -> tuple[int, ...]:
    """'3,32,32' or '3x32x32' -> (3, 32, 32): the shape of one example, without the batch dim."""
    parts = [p for p in re.split(r"[,x\s]+", text.strip()) if p]
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise UsageError(f"invalid --input-shape {text!r}: use positive integers like 3,32,32")
    return shape


SUGGESTED = "suggested"


def parse_lr(text: str) -> tuple[float | None, bool]:
    """'3e-4' -> (3e-4, False); 'suggested' -> (None, True): train at the LR range test's pick."""
    value = text.strip().lower()
    if value == SUGGESTED:
        return None, True
    try:
        lr = float(value)
    except ValueError:
        lr = -1.0
    if not lr > 0:
        raise UsageError(f"invalid --lr {text!r}: use a positive number or '{SUGGESTED}'")
    return lr, False


@dataclass(frozen=True)
class CheckOptions:
    device: str = "auto"
    seed: int = 0
    batch_size: int = 16
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    task: Task = Task.AUTO
    vocab_size: int | None = None
    quiet: bool = False
    steps: int | None = None  # training steps of the overfit probe (None: its default)
    lr: float | None = None  # learning rate for training probes (None: the optimizer's own)
    lr_suggested: bool = False  # overfit trains at the lr-range probe's suggestion (--lr suggested)
    amp: Amp = Amp.NONE
    lr_start: float | None = None  # LR range test: first and last LR, steps, schedule, repeats
    lr_end: float | None = None
    range_steps: int | None = None
    range_mode: RangeMode = RangeMode.EXP
    repeats: int = 1
