"""Errors that mean "bad input": the CLI prints them as one line and exits with code 2.

The API raises the same classes, so a test can catch exactly the kind of mistake it expects.
"""

from __future__ import annotations

import sysconfig
import traceback
from pathlib import Path

# The standard library's folder: bdb.py (a forgotten breakpoint()) is not the user's line.
_STDLIB = Path(sysconfig.get_paths()["stdlib"]).as_posix() + "/"


class UsageError(Exception):
    """The user's target, options or model definition cannot be used; the message says why."""


class TargetError(UsageError):
    """The target cannot be loaded: a missing file, a syntax error, no factory, an import error."""


class ContractError(UsageError):
    """The model definition breaks the contract: the factory, batch, output, loss or optimizer."""


class OptionError(UsageError):
    """An option or configuration value is invalid, conflicts with another, or is unknown."""


class OutputError(UsageError):
    """An export destination cannot be written."""


class RankLost(UsageError):
    """Under torchrun, a collective failed: another rank hangs past the collective timeout or
    died. The process group is unusable, so the whole distributed check ends."""


def collective_failure(exc: BaseException) -> bool:
    """Does `exc` come from a collective that timed out or lost its peer? gloo raises a plain
    RuntimeError from its transport; NCCL's watchdog a DistBackendError."""
    backend_error = type(exc).__name__ == "DistBackendError"
    return backend_error or (isinstance(exc, RuntimeError) and "/gloo/transport/" in str(exc))


class UserExit(ContractError):
    """User code raised SystemExit (or another BaseException): the check cannot have passed."""


def _is_library(filename: str) -> bool:
    path = filename.replace("\\", "/")
    return "/nndiag/" in path or "/site-packages/" in path or path.startswith(("<", _STDLIB))


def user_frame(exc: BaseException) -> str:
    """' (at model.py:12)' for the innermost frame of the user's own code, or ''."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if not _is_library(f.filename)]
    return f" (at {Path(user[-1].filename).name}:{user[-1].lineno})" if user else ""


def describe_exception(exc: BaseException) -> str:
    """'ValueError: message (at model.py:12)': the user's own frame, for a one-line error."""
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}){user_frame(exc)}"
    text = str(exc).strip()
    message = text.splitlines()[0] if text else ""
    where = user_frame(exc)
    return f"{type(exc).__name__}: {message}{where}" if message else f"{type(exc).__name__}{where}"


def from_user_code(description: str, exc: BaseException) -> UsageError:
    """The UsageError for an exception raised inside a user callable (factory, batch, loss...)."""
    if isinstance(exc, UsageError):
        return exc
    if not isinstance(exc, Exception):  # SystemExit, GeneratorExit, custom BaseExceptions
        return UserExit(
            f"{description} raised {describe_exception(exc)}: user code must not exit or raise "
            "BaseException during a check"
        )
    return ContractError(f"{description} raised {describe_exception(exc)}")
