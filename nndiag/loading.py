"""Resolve a target string to the callables of the model-definition contract (docs/contract.md).

| target                      | factory                       |
| path/to/model.py            | build_model                   |
| path/to/model.py:make_net   | make_net                      |
| package.module:attr         | attr (a class or a function)  |

Every model file gets its own module namespace: its name in sys.modules is unique to its path,
and the sibling modules it imports (`helpers.py` beside it) are its own, so two files whose
siblings share a name never see each other's. Every failure raises a UsageError with one line.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from nndiag.errors import TargetError, describe_exception

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_FACTORY = "build_model"
HOOKS = (
    "make_batch", "make_loader", "loss_fn", "make_optimizer", "shard_model", "init_weights",
    "training_step",
)  # fmt: skip


@dataclass(frozen=True)
class ModelSpec:
    """What a model file or module provides; the optional hooks are None when absent."""

    target: str
    factory: Callable[[], Any]
    make_batch: Callable[[int], Any] | None = None
    make_loader: Callable[[], Any] | None = None
    loss_fn: Callable[[Any, Any], Any] | None = None
    make_optimizer: Callable[[Any], Any] | None = None
    shard_model: Callable[[Any, Any], Any] | None = None
    init_weights: Callable[[Any], Any] | None = None
    training_step: Callable[[Any, Any], Any] | None = None


def split_target(target: str) -> tuple[str, str | None]:
    """'a/b.py:make' -> ('a/b.py', 'make'); a trailing ':attr' must be an identifier."""
    source, sep, attr = target.rpartition(":")
    if sep and _IDENTIFIER.match(attr) and source:
        return source, attr
    return target, None


def load_spec(target: str) -> ModelSpec:
    source, attr = split_target(target)
    if source.endswith(".py"):
        module = _import_file(Path(source))
    elif Path(source).is_file():
        raise TargetError(f"{source} is not a Python file: give a .py file or package.module:attr")
    elif Path(source).is_dir():
        raise TargetError(f"{source} is a folder: give the model file in it (model.py)")
    elif attr is None:
        raise TargetError(f"module target {target!r} needs ':attr' naming the model factory")
    else:
        module = _import_module(source)
    name = attr or DEFAULT_FACTORY
    factory = getattr(module, name, None)
    if factory is None:
        raise TargetError(
            f"{source} defines no {name}(); add it or name the factory as {source}:NAME"
        )
    if not callable(factory):
        raise TargetError(f"{source}:{name} is not callable")

    def optional(hook: str) -> Any:
        value = getattr(module, hook, None)
        if value is not None and not callable(value):
            raise TargetError(f"{source}:{hook} must be callable, got {type(value).__name__}")
        return value

    return ModelSpec(target, factory, **{hook: optional(hook) for hook in HOOKS})


def _module_name(path: Path) -> str:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    return f"nndiag_user_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}"


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise TargetError(f"model file not found: {path}")
    name = _module_name(path)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise TargetError(f"syntax error in {path} line {exc.lineno}: {exc.msg}") from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise TargetError(f"importing {path} raised {describe_exception(exc)}") from exc
    return module


def _siblings(folder: Path) -> set[str]:
    """Top-level module names a file in `folder` can import from beside it."""
    names = {p.stem for p in folder.glob("*.py")}
    names |= {p.parent.name for p in folder.glob("*/__init__.py")}
    return names


@contextmanager
def model_namespace(target: str) -> Iterator[None]:
    """Where a target's code runs for the whole check: a model file's folder first on sys.path
    (so it and its factory can import the modules beside it), a module target's working
    directory (as `python -m` does). load_spec runs inside it."""
    source, _ = split_target(target)
    folder = Path(source).resolve().parent if source.endswith(".py") else Path.cwd()
    with _own_siblings(folder) if source.endswith(".py") else _on_path(folder):
        yield


@contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        if str(folder) in sys.path:
            sys.path.remove(str(folder))


@contextmanager
def _own_siblings(folder: Path) -> Iterator[None]:
    """`folder` first on sys.path and no cached module of a sibling's name; the siblings
    imported meanwhile leave sys.modules afterwards (the model module keeps them), and what was
    cached under those names before comes back."""
    siblings = _siblings(folder)
    hidden = {n: m for n, m in sys.modules.items() if n.split(".")[0] in siblings}
    for n in hidden:
        del sys.modules[n]
    try:
        with _on_path(folder):
            yield
    finally:
        for n in [n for n in sys.modules if n.split(".")[0] in siblings]:
            del sys.modules[n]
        sys.modules.update(hidden)


def _import_module(name: str) -> ModuleType:
    if not re.match(r"^[A-Za-z_][\w.]*$", name):
        raise TargetError(f"target {name!r} is neither a .py file nor an importable module name")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise TargetError(f"no such module: {name} ({exc})") from exc
    except SyntaxError as exc:
        raise TargetError(f"syntax error in {exc.filename} line {exc.lineno}: {exc.msg}") from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise TargetError(f"importing {name} raised {describe_exception(exc)}") from exc
