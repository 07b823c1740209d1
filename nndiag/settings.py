"""Per-probe settings: each probe's frozen Config, overridden by name and checked up front.

    settings = {"activations": {"dead_fraction_max": 0.6}, "lr-range": {"num_steps": 200}}

Configs are built with dataclasses.replace; nothing global is ever mutated, so two checks in one
process (two threads, two API calls) never see each other's settings. An unknown probe or key is
an OptionError naming the nearest valid one. The flat keys of nndiag 0.1
(`[tool.nndiag.thresholds]`, `thresholds=` in the API) still work for one release, with a
deprecation note.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from nndiag.errors import OptionError
from nndiag.probes.base import ProbeSpec

# nndiag 0.1's flat threshold keys -> (probe, setting); None: the threshold no longer exists.
LEGACY: dict[str, tuple[str, str] | None] = {
    "absurd_grad_weight_ratio": None,
    "accuracy_every": ("overfit", "accuracy_every"),
    "calibration_batches": ("jacobian", "calibration_batches"),
    "ce_excess_nats_max": ("init-loss", "ce_excess_nats_max"),
    "confident": None,
    "constant_target_rtol": ("data", "constant_target_rtol"),
    "dead_fraction_max": ("activations", "dead_fraction_max"),
    "default_lr": None,
    "default_steps": ("overfit", "steps"),
    "diverge_factor": ("lr-range", "diverge_factor"),
    "end_lr": ("lr-range", "end_lr"),
    "explode_first_over_last": ("gradients", "explode_first_over_last"),
    "full_depth": None,
    "gain_explode": ("jacobian", "gain_explode"),
    "gain_vanish": ("jacobian", "gain_vanish"),
    "horizon_fraction": ("jacobian", "horizon_fraction"),
    "hutchinson_probes": ("jacobian", "hutchinson_probes"),
    "ignore_index": None,
    "init_gain_max": ("gradients", "init_gain_max"),
    "init_gain_min": ("gradients", "init_gain_min"),
    "input_rms_max": ("data", "input_rms_max"),
    "input_rms_min": ("data", "input_rms_min"),
    "inputs_help_fraction": ("overfit", "inputs_help_fraction"),
    "majority_fraction_max": ("data", "majority_fraction_max"),
    "max_skipped_steps": ("lr-range", "max_skipped_steps"),
    "min_depth": None,
    "min_points": ("lr-range", "min_points"),
    "min_profile_blocks": ("jacobian", "min_profile_blocks"),
    "min_profile_layers": ("gradients", "min_profile_layers"),
    "min_sequence": ("jacobian", "min_sequence"),
    "mse_ratio_max": ("init-loss", "mse_ratio_max"),
    "no_signal_fraction": None,
    "nonlinearity_min": ("jacobian", "nonlinearity_min"),
    "num_steps": ("lr-range", "num_steps"),
    "overfit_lr": ("overfit", "default_lr"),
    "pass_accuracy": ("overfit", "pass_accuracy"),
    "pass_loss_fraction": ("overfit", "pass_loss_fraction"),
    "plateau_improvement": ("overfit", "plateau_improvement"),
    "probability_sum_atol": ("init-loss", "probability_sum_atol"),
    "same_output_rtol": ("init-loss", "same_output_rtol"),
    "saturated_fraction_max": ("activations", "saturated_fraction_max"),
    "short_horizon_fraction": ("jacobian", "short_horizon_fraction"),
    "sigmoid_saturation": ("activations", "sigmoid_saturation"),
    "skip_end": ("lr-range", "skip_end"),
    "skip_start": ("lr-range", "skip_start"),
    "smooth_beta": ("lr-range", "smooth_beta"),
    "somewhat": None,
    "spectral_iterations": ("jacobian", "spectral_iterations"),
    "spectral_tolerance": ("jacobian", "spectral_tolerance"),
    "start_lr": ("lr-range", "start_lr"),
    "tanh_saturation": ("activations", "tanh_saturation"),
    "temporal_growth_max": ("jacobian", "temporal_growth_max"),
    "trend_window": ("lr-range", "trend_window"),
    "vanish_first_over_last": ("gradients", "vanish_first_over_last"),
    "zero_agreement_decades": None,
}


def nearest(word: str, candidates: Iterable[str]) -> str | None:
    """The valid name a typo most likely meant: a close spelling, else one it abbreviates."""
    options = [str(o) for o in candidates]  # enum keys (finding codes) by their names
    found = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    if found:
        return found[0]
    return next((o for o in options if word and (o.startswith(word) or word in o)), None)


@dataclass(frozen=True)
class Resolved:
    configs: dict[str, Any]  # probe name -> its Config
    notes: tuple[str, ...] = ()  # deprecation notes

    def __getitem__(self, name: str) -> Any:
        return self.configs[name]


def resolve(
    specs: list[ProbeSpec[Any, Any]],
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    legacy: Mapping[str, Any] | None = None,
    where: str = "settings",
) -> Resolved:
    """Each spec's Config with the given overrides; legacy flat keys are translated first."""
    by_name = {s.name: s for s in specs}
    merged: dict[str, dict[str, Any]] = {}
    notes = []
    for key, value in (legacy or {}).items():
        target, note = _translate_legacy(key, where)
        notes.append(note)
        if target is not None and target[0] in by_name:
            merged.setdefault(target[0], {})[target[1]] = value
    for probe, values in (settings or {}).items():
        if probe not in by_name:
            hint = nearest(probe, by_name)
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
            raise OptionError(
                f"{where}: unknown probe {probe!r}{suggestion}; valid: {', '.join(by_name)}"
            )
        if not isinstance(values, Mapping):
            raise OptionError(f"{where}: [{probe}] must be a table of settings")
        merged.setdefault(probe, {}).update(values)
    configs = {
        name: override(spec.config(), merged.get(name, {}), f"{where} [{name}]")
        for name, spec in by_name.items()
    }
    return Resolved(configs, tuple(notes))


def _translate_legacy(key: str, where: str) -> tuple[tuple[str, str] | None, str]:
    if key not in LEGACY:
        hint = nearest(key, LEGACY)
        suggestion = f" (did you mean {hint!r}?)" if hint else ""
        raise OptionError(f"{where}: unknown threshold {key!r}{suggestion}")
    target = LEGACY[key]
    if target is None:
        return None, (
            f"deprecated: the threshold {key!r} no longer exists and has no effect; see "
            "docs/configuration.md"
        )
    probe, name = target
    return target, (
        f"deprecated: the flat threshold {key!r} is now `{name}` of the {probe} probe "
        f"([tool.nndiag.{probe}] {name} = ..., or settings={{{probe!r}: {{{name!r}: ...}}}}); "
        "flat keys stop working in the next release"
    )


def override(config: Any, values: Mapping[str, Any], where: str) -> Any:
    """dataclasses.replace with every value checked against the field's type and range."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    hints = typing.get_type_hints(type(config))
    changes = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in fields:
            hint = nearest(name, fields)
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
            raise OptionError(
                f"{where}: unknown setting {key!r}{suggestion}; valid: {', '.join(fields)}"
            )
        changes[name] = _checked(coerce(value, hints[name], f"{where} {name}"), fields[name], where)
    return dataclasses.replace(config, **changes)


def _checked(value: Any, field: dataclasses.Field[Any], where: str) -> Any:
    low, high = field.metadata.get("low"), field.metadata.get("high")
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and ((low is not None and value < low) or (high is not None and value > high)):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise OptionError(f"{where} {field.name} = {value!r}: must be within {bounds}")
    return value


def coerce(value: Any, hint: Any, where: str) -> Any:
    """Convert a TOML/JSON value to the annotated type: int, float, bool, str, an Enum, X | None,
    a Literal, or tuple[X, ...] (from a list)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, where)
            except OptionError as exc:
                errors.append(str(exc))
        prefix = f"{where}: {value!r} is not "
        raise OptionError(prefix + " or ".join(e.removeprefix(prefix) for e in errors))
    if origin is typing.Literal:
        if value in args:
            return value
        raise OptionError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(coerce(v, args[0], where) for v in value)
    return _scalar(value, hint, where)


def _scalar(value: Any, hint: Any, where: str) -> Any:
    if isinstance(hint, type) and issubclass(hint, Enum):
        try:
            return hint(value)
        except ValueError:
            valid = ", ".join(str(m.value) for m in hint)
            raise OptionError(f"{where}: {value!r} is not one of {valid}") from None
    converted = _PLAIN.get(hint, lambda _v: None)(value)
    if converted is None:
        name = getattr(hint, "__name__", str(hint))
        raise OptionError(f"{where}: {value!r} is not a valid {name}")
    return converted


def _as_float(value: Any) -> float | None:
    """A number, or a string that parses as one ('1e-3' from a command line); a bool is not."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(value) if isinstance(value, str) else None
    except ValueError:
        return None


# Plain hints: the value converted, or None when it is not one (a bool is not an int).
_PLAIN: dict[Any, Callable[[Any], Any]] = {
    bool: lambda v: v if isinstance(v, bool) else None,
    int: lambda v: v if isinstance(v, int) and not isinstance(v, bool) else None,
    float: _as_float,
    str: lambda v: v if isinstance(v, str) else None,
}


def as_dict(config: Any) -> dict[str, Any]:
    """A config's values, JSON-ready (enums as their values, tuples as lists)."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        out[f.name] = (
            value.value
            if isinstance(value, Enum)
            else (list(value) if isinstance(value, tuple) else value)
        )
    return out


# Flags of the CLI and keyword arguments of the API that set one probe's setting.
def alias_table() -> dict[str, tuple[str, str]]:
    """Every built-in probe's aliases: alias -> (probe, setting)."""
    from nndiag.probes import builtin, spec

    return {alias: (name, key) for name in builtin() for alias, key in spec(name).aliases.items()}


def with_aliases(
    settings: Mapping[str, Mapping[str, Any]] | None, aliases: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Settings with alias values (`steps=50` -> overfit.steps) merged in; explicit settings win."""
    merged: dict[str, dict[str, Any]] = {}
    known = alias_table()
    for key, value in aliases.items():
        probe, name = known[key]
        merged.setdefault(probe, {})[name] = value
    for probe, values in (settings or {}).items():
        merged.setdefault(probe, {}).update(values)
    return merged
