"""nndiag: neural-network health checks before training.

`import nndiag` stays light: torch is imported only when `check` runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nndiag.errors import UsageError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from nndiag.report import Report

__all__ = ["UsageError", "__version__", "check"]


def check(target_or_model: Any, *args: Any, **kwargs: Any) -> Report:
    """Run nndiag's probes; see nndiag.api.check for the arguments."""
    from nndiag.api import check as _check

    return _check(target_or_model, *args, **kwargs)
