"""nndiag where users already are: a Lightning Callback, a Hugging Face TrainerCallback and a
pytest fixture. Each checks the real model on the real data loader before training starts and
stops the run on findings at or above `fail_on`. Optional extras: `pip install nndiag[lightning]`,
`nndiag[huggingface]`; the pytest plugin needs nothing more."""

from __future__ import annotations

from typing import Any

from nndiag.probes import builtin, spec
from nndiag.report import Report

# The training probes take time and the callbacks run before every fit: by default they run the
# quick probes (ProbeSpec.quick: seconds at init); pass probes=None to run everything.
QUICK_PROBES = tuple(name for name in builtin() if spec(name).quick)


class CheckFailed(AssertionError):
    """The check found what `fail_on` forbids: the run stops before training."""

    def __init__(self, report: Report, fail_on: str, strict: bool) -> None:
        self.report = report
        text = report.findings_text(fail_on, strict)
        super().__init__("nndiag: the model is not ready to train:\n" + text)


def verdict(report: Report, fail_on: str, strict: bool) -> None:
    """Raise CheckFailed when the report fails the gate."""
    if report.fails(fail_on, strict):
        raise CheckFailed(report, fail_on, strict)


def precision_options(precision: str) -> dict[str, Any]:
    """A Trainer's precision ("16-mixed", "bf16-mixed", "32-true") as nndiag's options: the
    training probes train under that autocast, and the precision probe's findings are errors for
    that format only."""
    if precision.startswith("bf16"):
        return {"amp": "bf16", "precision": "bf16"}
    if precision.startswith("16"):
        return {"amp": "fp16", "precision": "fp16"}
    return {}


def summary(report: Report) -> str:
    """What a callback prints when the check passes (or before it stops the run): the verdict
    and the findings at warning and above with their hints and consequences."""
    text = report.findings_text("warning")
    return report.verdict() + ("\n" + text if text else "")
