"""Options shared by the CLI and the Python API, and configuration files (no heavy imports).

General options (device, seed, batch size, ...) live in CheckOptions; every probe's own settings
live in its frozen Config (nndiag.probes), set per probe: `[tool.nndiag.<probe>]` in a file, or
`settings={"<probe>": {...}}` through the API (nndiag.settings resolves them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from nndiag.errors import OptionError

MAX_SEED = 2**63 - 1  # torch.manual_seed takes a 64-bit integer


class Task(StrEnum):
    AUTO = "auto"
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


class Amp(StrEnum):
    NONE = "none"
    BF16 = "bf16"
    FP16 = "fp16"


class FailOn(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NEVER = "never"


class Distributed(StrEnum):
    NONE = "none"
    DDP = "ddp"
    FSDP = "fsdp"


_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def parse_device(text: str) -> str:
    """Validate a device name at the boundary: auto, cpu, cuda, cuda:N or mps."""
    value = str(text).strip().lower()
    if not _DEVICE_PATTERN.match(value):
        raise OptionError(f"invalid --device {text!r}: use auto, cpu, cuda, cuda:N or mps")
    return value


def parse_shape(text: str | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """'3,32,32', '3x32x32' or [3, 32, 32] -> (3, 32, 32): one example, without the batch dim."""
    parts = (
        [str(p) for p in text]
        if isinstance(text, (list, tuple))
        else ([p for p in re.split(r"[,x\s]+", str(text).strip()) if p])
    )
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise OptionError(f"invalid --input-shape {text!r}: use positive integers like 3,32,32")
    return shape


SUGGESTED = "suggested"


@dataclass(frozen=True)
class CheckOptions:
    """Options that concern the whole check (each probe's own settings are in its Config)."""

    device: str = "auto"
    seed: int = 0
    batch_size: int | None = None  # the batch size you train with (None: make_batch's default)
    input_shape: tuple[int, ...] | None = None  # synthetic batches: one example's shape
    num_classes: int | None = None
    task: Task = Task.AUTO
    vocab_size: int | None = None
    ignore_index: int = -100  # target value skipped by the loss (PyTorch and Hugging Face)
    amp: Amp = Amp.NONE  # mixed precision of the training probes
    budget: float | str | None = None  # 90 / "90s" seconds, "200steps"; None: default; 0: none
    strict: bool = False  # consequences of a root cause count toward --fail-on too
    threads: int | None = None  # torch threads during the check (None: torch's default)
    distributed: Distributed = Distributed.NONE

    def __post_init__(self) -> None:
        _check_int("seed", self.seed, 0, MAX_SEED)
        for name in ("batch_size", "num_classes", "vocab_size", "threads"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, 2 if name in ("num_classes", "vocab_size") else 1)
        from nndiag.budget import parse

        parse(self.budget)  # a bad budget fails here, before anything is built
        for name, kind in (("task", Task), ("amp", Amp), ("distributed", Distributed)):
            try:
                object.__setattr__(self, name, kind(getattr(self, name)))
            except ValueError:
                valid = ", ".join(k.value for k in kind)
                raise OptionError(f"invalid {name} {getattr(self, name)!r}: use {valid}") from None
        object.__setattr__(self, "device", parse_device(self.device))
        if self.input_shape is not None:
            object.__setattr__(self, "input_shape", parse_shape(self.input_shape))


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    flag = "--" + name.replace("_", "-")
    if not isinstance(value, int) or isinstance(value, bool):
        raise OptionError(f"invalid {flag} {value!r}: an integer is required")
    if value < low or (high is not None and value > high):
        limit = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise OptionError(f"invalid {flag} {value}: must be {limit}")


# ---- configuration files: [tool.nndiag] in pyproject.toml, or --config FILE --------------------

# Values that name files: relative paths are taken from the config file's folder.
PATH_KEYS = {"target", "json_path", "csv_dir", "plot_dir", "junit_path", "html_path", "svg_path"}
LEGACY_TABLE = "thresholds"  # the flat [tool.nndiag.thresholds] of nndiag 0.1, deprecated


@dataclass(frozen=True)
class FileConfig:
    path: Path | None  # None: no configuration found
    options: dict[str, Any]  # CLI parameter name -> value
    settings: dict[str, dict[str, Any]]  # probe name -> {setting: value}
    legacy: dict[str, Any]  # the deprecated flat thresholds table


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml with a [tool.nndiag] table, from `start` upward."""
    for folder in (start, *start.parents):
        candidate = folder / "pyproject.toml"
        if candidate.is_file() and "nndiag" in read_toml(candidate).get("tool", {}):
            return candidate
    return None


def load_config(
    path: Path | None, keys: dict[str, str], probes: list[str], cwd: Path
) -> FileConfig:
    """Read --config FILE (a pyproject.toml with [tool.nndiag], or a plain TOML file of the same
    keys) or else the discovered pyproject.toml. `keys` maps each accepted key, spelled like its
    CLI flag (`batch-size` or `batch_size`, `json`, `probe` or `probes`), to the parameter name;
    a table named after a probe holds that probe's settings."""
    path = path or find_pyproject(cwd)
    if path is None:
        return FileConfig(None, {}, {}, {})
    if not path.is_file():
        raise OptionError(f"config file not found: {path}")
    data = read_toml(path)
    table = dict(data.get("tool", {}).get("nndiag", data))
    legacy = table.pop(LEGACY_TABLE, {})
    if not isinstance(legacy, dict):
        raise OptionError(f"{path}: [{LEGACY_TABLE}] must be a table of setting names to numbers")
    settings = {k: table.pop(k) for k in list(table) if k in probes and isinstance(table[k], dict)}
    options: dict[str, Any] = {}
    for key, value in table.items():
        name = keys.get(key.replace("-", "_"))
        if name is None:
            raise OptionError(f"{path}: {_unknown(key, keys, probes)}")
        if name in PATH_KEYS and isinstance(value, str):
            value = _resolve_target(path, value) if name == "target" else str(path.parent / value)
        if name == "input_shape" and isinstance(value, list):
            value = ",".join(map(str, value))
        options[name] = value
    return FileConfig(path, options, settings, legacy)


def _unknown(key: str, keys: dict[str, str], probes: list[str]) -> str:
    from nndiag.settings import nearest

    valid = sorted({k.replace("_", "-") for k in keys})
    hint = nearest(key.replace("_", "-"), [*valid, *probes])
    suggestion = f" (did you mean {hint!r}?)" if hint else ""
    return (
        f"unknown key {key!r} in the nndiag configuration{suggestion}; valid keys: "
        f"{', '.join(valid)}, and a table per probe: {', '.join(probes)}"
    )


def _resolve_target(config: Path, target: str) -> str:
    """A file target is relative to the config file; a module target stays as it is."""
    from nndiag.loading import split_target

    source, attr = split_target(target)
    if source.endswith(".py") and not Path(source).is_absolute():
        source = str(config.parent / source)
    return source + (f":{attr}" if attr else "")


def read_toml(path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise OptionError(f"cannot read config {path}: {exc}") from exc
