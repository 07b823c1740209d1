"""The probe registry: built-in probes (every module of this package with a `SPEC`) in their
declared order, then plugins from the `nndiag.probes` entry point group. Plugin specs load on
demand.

A plugin is one module that defines `SPEC = ProbeSpec(...)` and is declared in its package's
metadata:

    [project.entry-points."nndiag.probes"]
    my-probe = "my_package.my_probe:SPEC"
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from nndiag.errors import OptionError
from nndiag.findings import CATALOG, CodeInfo
from nndiag.probes.base import ProbeSpec

ENTRY_POINT_GROUP = "nndiag.probes"


@cache
def _builtin_specs() -> dict[str, ProbeSpec[Any, Any]]:
    """Every module of this package that defines `SPEC` is a built-in probe: a new probe is one
    new module. Probe modules import no torch at module level, so this stays cheap."""
    found = []
    for module in pkgutil.iter_modules(__path__):
        candidate = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SPEC", None)
        if isinstance(candidate, ProbeSpec):
            found.append(candidate)
    return {s.name: s for s in sorted(found, key=lambda s: (s.order, s.name))}


def builtin() -> tuple[str, ...]:
    """The built-in probes' names, in their declared order (ProbeSpec.order)."""
    return tuple(_builtin_specs())


def _plugins() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in builtin()}


def probe_names() -> list[str]:
    """Every probe's name, built-in first, without loading any plugin."""
    return [*builtin(), *sorted(_plugins())]


@cache
def spec(name: str) -> ProbeSpec[Any, Any]:
    builtins = _builtin_specs()
    if name in builtins:
        found = builtins[name]
    else:
        plugins = _plugins()
        if name not in plugins:
            raise OptionError(f"unknown probe {name!r}; valid: {', '.join(probe_names())}")
        found = plugins[name].load()
        found = getattr(found, "SPEC", found)
    if not isinstance(found, ProbeSpec) or found.name != name:
        raise OptionError(f"the probe plugin {name!r} does not provide a ProbeSpec named {name!r}")
    return found


def registry() -> list[ProbeSpec[Any, Any]]:
    """Every spec in run order (its `order`; probes that train a copy after all the others,
    plugins with built-ins by the same rule). A probe that
    `needs` a provision runs after the probe that provides it (checked: a plugin that breaks the
    order fails here, not by silently reading nothing)."""
    specs = [spec(name) for name in probe_names()]
    ordered = sorted(specs, key=lambda s: (s.trains, s.order))  # stable: built-ins first
    provided: set[type] = set()
    providers = {s.provides for s in ordered if s.provides is not None}
    for s in ordered:
        late = [t.__name__ for t in s.needs if t in providers and t not in provided]
        if late:
            raise OptionError(f"probe {s.name!r} runs before the probe that provides {late}")
        if s.provides is not None:
            provided.add(s.provides)
    return ordered


def catalog() -> dict[str, CodeInfo]:
    """Every finding code: the built-in CATALOG and the codes plugins add (plugins are loaded)."""
    found = dict(CATALOG)
    for name in _plugins():
        found.update(spec(name).catalog)
    return found


def raised_by(code: str, names: list[str] | None = None) -> tuple[str, ...]:
    """The probes (of `names`, default the built-in ones) whose spec declares `code`."""
    return tuple(name for name in names or builtin() if code in spec(name).codes)


def select(include: list[str] | None = None, exclude: list[str] | None = None) -> list[str]:
    """Names in run order, restricted to `include` (when given) and without `exclude`."""
    known = probe_names()
    for name in [*(include or []), *(exclude or [])]:
        if name not in known:
            from nndiag.settings import nearest

            hint = nearest(name, known)
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
            raise OptionError(f"unknown probe {name!r}{suggestion}; valid: {', '.join(known)}")
    ordered = [s.name for s in registry()]
    chosen = ordered if not include else [n for n in ordered if n in include]
    return [n for n in chosen if n not in (exclude or [])]
