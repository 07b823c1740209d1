"""Every documented threshold, by name, and a context that overrides some for one check.

A threshold is an upper-case numeric constant of a probe module (the ones docs/probes/ documents;
tests/test_docs.py keeps the two in step). Its configuration key is the constant's name in lower
case, e.g. `dead_fraction_max` for activations.DEAD_FRACTION_MAX. Probes read their constants at
call time, so overriding the module attribute for the duration of a check is enough; the previous
values come back in `finally`. Not thread-safe: one check at a time per process.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from nndiag.errors import UsageError
from nndiag.probes import PROBE_MODULES


def registry() -> dict[str, list[tuple[ModuleType, str]]]:
    """Configuration key -> every (probe module, constant name) that holds it: a constant imported
    into several probes (DEFAULT_LR) is one threshold."""
    found: dict[str, list[tuple[ModuleType, str]]] = {}
    for module_name in PROBE_MODULES.values():
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if name.isupper() and not name.startswith("_") and name != "NAME" and is_number:
                found.setdefault(name.lower(), []).append((module, name))
    return found


@contextmanager
def overridden(values: dict[str, float]) -> Iterator[None]:
    """Set the named thresholds for the duration of the block; unknown names are a UsageError."""
    known = registry() if values else {}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UsageError(
            f"unknown threshold(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}"
        )
    saved = [(module, name, getattr(module, name)) for key in values for module, name in known[key]]
    try:
        for key, value in values.items():
            for module, name in known[key]:
                setattr(module, name, type(getattr(module, name))(value))
        yield
    finally:
        for module, name, old in saved:
            setattr(module, name, old)
