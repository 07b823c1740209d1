"""Resolve a target string to the callables of the model-definition contract (DESIGN.md §2).

| target                      | factory                       |
| path/to/model.py            | build_model                   |
| path/to/model.py:make_net   | make_net                      |
| package.module:attr         | attr (a class or a function)  |

Every failure raises UsageError with one readable line; the CLI maps it to exit code 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from nndiag.errors import UsageError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_FACTORY = "build_model"


@dataclass(frozen=True)
class ModelSpec:
    """What a model file or module provides; the optional hooks are None when absent."""

    target: str
    factory: Callable[[], Any]
    make_batch: Callable[[int], Any] | None = None
    make_loader: Callable[[], Any] | None = None
    loss_fn: Callable[[Any, Any], Any] | None = None
    make_optimizer: Callable[[Any], Any] | None = None


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
        raise UsageError(f"{source} is not a Python file: give a .py file or package.module:attr")
    elif attr is None:
        raise UsageError(f"module target {target!r} needs ':attr' naming the model factory")
    else:
        module = _import_module(source)
    name = attr or DEFAULT_FACTORY
    factory = getattr(module, name, None)
    if factory is None:
        raise UsageError(
            f"{source} defines no {name}(); add it or name the factory as {source}:NAME"
        )
    if not callable(factory):
        raise UsageError(f"{source}:{name} is not callable")

    def optional(hook: str) -> Any:
        value = getattr(module, hook, None)
        if value is not None and not callable(value):
            raise UsageError(f"{source}:{hook} must be callable, got {type(value).__name__}")
        return value

    return ModelSpec(
        target=target,
        factory=factory,
        make_batch=optional("make_batch"),
        make_loader=optional("make_loader"),
        loss_fn=optional("loss_fn"),
        make_optimizer=optional("make_optimizer"),
    )


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    module_name = f"nndiag_user_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    # The file's folder goes on sys.path so that it can import its sibling modules.
    with _on_sys_path(path.resolve().parent):
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            raise UsageError(f"syntax error in {path} line {exc.lineno}: {exc.msg}") from exc
        except Exception as exc:
            raise UsageError(f"importing {path} raised {describe_exception(exc)}") from exc
    return module


@contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    entry = str(folder)
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        sys.path.remove(entry)


def _import_module(name: str) -> ModuleType:
    if not re.match(r"^[A-Za-z_][\w.]*$", name):
        raise UsageError(f"target {name!r} is neither a .py file nor an importable module name")
    try:
        with _on_sys_path(Path.cwd()):  # as `python -m` does: packages of the working directory
            return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        raise UsageError(f"no such module: {name} ({exc})") from exc
    except SyntaxError as exc:
        raise UsageError(f"syntax error in {exc.filename} line {exc.lineno}: {exc.msg}") from exc
    except Exception as exc:
        raise UsageError(f"importing {name} raised {describe_exception(exc)}") from exc


def _is_library(filename: str) -> bool:
    path = filename.replace("\\", "/")
    return "/nndiag/" in path or "/site-packages/" in path or path.startswith("<")


def describe_exception(exc: BaseException) -> str:
    """'ValueError: message (at file.py:12)': the user's own frame, for a one-line error."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if not _is_library(f.filename)]
    where = f" (at {Path(user[-1].filename).name}:{user[-1].lineno})" if user else ""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}{where}" if message else f"{type(exc).__name__}{where}"
