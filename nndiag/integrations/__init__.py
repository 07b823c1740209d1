"""nndiag where users already are: a Lightning Callback, a Hugging Face TrainerCallback and a
pytest fixture. Each checks the real model on the real data loader before training starts and
stops the run on findings at or above `fail_on`. Optional extras: `pip install nndiag[lightning]`,
`nndiag[huggingface]`; the pytest plugin needs nothing more."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from nndiag.report import Report

# The training probes take time and the callbacks run before every fit: by default they run the
# init probes, which need seconds; pass probes=None to run everything.
QUICK_PROBES = (
    "summary",
    "data",
    "structure",
    "init-loss",
    "gradients",
    "activations",
    "dependencies",
)


class CheckFailed(AssertionError):
    """The check found what `fail_on` forbids: the run stops before training."""

    def __init__(self, report: Report, fail_on: str, strict: bool) -> None:
        self.report = report
        text = report.findings_text(fail_on, strict)
        super().__init__("nndiag: the model is not ready to train:\n" + text)


def verdict(report: Report, fail_on: str, strict: bool) -> None:
    """Raise CheckFailed when the report fails the gate."""
    if fail_on != "never" and (report.failing(fail_on, strict) or report.unfinished):
        raise CheckFailed(report, fail_on, strict)


def pairs(
    loader: Iterable[Any], to_pair: Callable[[Any], tuple[Any, Any]]
) -> Callable[[], Iterator[tuple[Any, Any]]]:
    """A make_loader over a framework's loader, each batch turned into (inputs, targets)."""

    def make_loader() -> Iterator[tuple[Any, Any]]:
        return (to_pair(batch) for batch in loader)

    return make_loader


def first_two(batch: Any) -> tuple[Any, Any]:
    """(inputs, targets) from a (inputs, targets, ...) batch, as most loaders yield."""
    return batch[0], batch[1]
