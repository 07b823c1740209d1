"""Options shared by the CLI and the Python API (no heavy imports)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

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
    thresholds: dict[str, float] = field(default_factory=dict)  # overrides, see thresholds.py


# ---- configuration files: [tool.nndiag] in pyproject.toml, or --config FILE --------------------

# Values that name files: relative paths are taken from the config file's folder.
PATH_KEYS = {"target", "json_path", "csv_dir", "plot_dir", "junit_path", "html_path", "svg_path"}


@dataclass(frozen=True)
class FileConfig:
    path: Path | None  # None: no configuration found
    options: dict[str, Any]  # CLI parameter name -> default value
    thresholds: dict[str, float]


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml with a [tool.nndiag] table, from `start` upward."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "nndiag" in _read_toml(candidate).get("tool", {}):
            return candidate
    return None


def load_config(path: Path | None, keys: dict[str, str], cwd: Path) -> FileConfig:
    """Read --config FILE (a pyproject.toml with [tool.nndiag], or a plain TOML file of the same
    keys) or else the discovered pyproject.toml. `keys` maps each accepted key, spelled like its
    CLI flag (`batch-size` or `batch_size`, `json`, `probe` or `probes`), to the parameter name."""
    path = path or find_pyproject(cwd)
    if path is None:
        return FileConfig(None, {}, {})
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    data = _read_toml(path)
    table = dict(data.get("tool", {}).get("nndiag", data))
    thresholds = table.pop("thresholds", {})
    unknown = sorted(k for k in table if k.replace("-", "_") not in keys)
    if unknown:
        valid = sorted({k.replace("_", "-") for k in keys} | {"thresholds"})
        raise UsageError(
            f"{path}: unknown key(s) {', '.join(unknown)} in the nndiag configuration; valid keys: "
            f"{', '.join(valid)}"
        )
    options: dict[str, Any] = {}
    for key, value in table.items():
        name = keys[key.replace("-", "_")]
        if name in PATH_KEYS and isinstance(value, str):
            value = _resolve_target(path, value) if name == "target" else str(path.parent / value)
        if name == "input_shape" and isinstance(value, list):
            value = ",".join(map(str, value))
        options[name] = value
    if not isinstance(thresholds, dict) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in thresholds.values()
    ):
        raise UsageError(f"{path}: [thresholds] must map threshold names to numbers")
    return FileConfig(path, options, {k: float(v) for k, v in thresholds.items()})


def _resolve_target(config: Path, target: str) -> str:
    """A file target is relative to the config file; a module target stays as it is."""
    from nndiag.loading import split_target

    source, attr = split_target(target)
    if source.endswith(".py") and not Path(source).is_absolute():
        source = str(config.parent / source)
    return source + (f":{attr}" if attr else "")


def _read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read config {path}: {exc}") from exc
