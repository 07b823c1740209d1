"""Findings: the stable, public vocabulary of nndiag's diagnoses.

Finding codes are a public API (users grep them, CI keys on them): a code may be added, never
renamed.
This module imports nothing heavy so that the CLI's help and `nndiag explain` stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """Higher is worse; used for sorting and for `--fail-on`."""
        return {"error": 2, "warning": 1, "info": 0}[self.value]


class Code(StrEnum):
    NONFINITE_VALUES = "nonfinite-values"
    NO_GRADIENT = "no-gradient"
    EXPLODING_GRADIENTS = "exploding-gradients"
    VANISHING_GRADIENTS = "vanishing-gradients"
    DEAD_UNITS = "dead-units"
    SATURATED_UNITS = "saturated-units"
    INIT_SCALE = "init-scale"
    LOSS_AT_INIT = "loss-at-init"
    DOUBLE_SOFTMAX = "double-softmax"
    LOSS_BROADCAST = "loss-broadcast"
    OUTPUT_IGNORES_INPUT = "output-ignores-input"
    NO_NONLINEARITY = "no-nonlinearity"
    INPUT_SCALE = "input-scale"
    DEGENERATE_TARGETS = "degenerate-targets"
    FROZEN_PARAMETERS = "frozen-parameters"
    OVERFIT_FAILED = "overfit-failed"
    LR_RANGE_UNSTABLE = "lr-range-unstable"


@dataclass(frozen=True)
class CodeInfo:
    severity: Severity
    title: str
    hint: str


E, W = Severity.ERROR, Severity.WARNING

CATALOG: dict[Code, CodeInfo] = {
    Code.NONFINITE_VALUES: CodeInfo(
        E,
        "NaN/Inf in inputs, outputs, loss or gradients",
        "Find the first module named in the finding; check for log(0), division by zero, "
        "overflowing exp, or NaN already present in the data.",
    ),
    Code.NO_GRADIENT: CodeInfo(
        E,
        "trainable parameters get no gradient from the loss",
        "Look for .detach(), .item(), torch.no_grad() or .data in the forward path, or modules "
        "that are built but never called.",
    ),
    Code.EXPLODING_GRADIENTS: CodeInfo(
        E,
        "gradient or signal grows exponentially with depth or time",
        "Lower the init scale (He/Glorot), add normalisation or residual scaling, clip gradients.",
    ),
    Code.VANISHING_GRADIENTS: CodeInfo(
        W,
        "gradient or signal shrinks exponentially toward the input",
        "Use ReLU-family activations or residual connections, normalisation, or a larger init.",
    ),
    Code.DEAD_UNITS: CodeInfo(
        W,
        "ReLU-family units output zero for the whole batch",
        "Check the bias init and input scale; try LeakyReLU/GELU or a smaller learning rate.",
    ),
    Code.SATURATED_UNITS: CodeInfo(
        W,
        "sigmoid/tanh units stuck in their flat regions",
        "Normalise inputs, shrink the init scale, or use a non-saturating activation.",
    ),
    Code.INIT_SCALE: CodeInfo(
        W,
        "weight scale far from the fan-in-appropriate scale",
        "Re-initialise with nn.init.kaiming_normal_ (ReLU) or xavier_uniform_ (tanh/linear).",
    ),
    Code.LOSS_AT_INIT: CodeInfo(
        W,
        "initial loss far from the chance-level baseline",
        "Shrink the last layer's init (e.g. zero it or scale by 0.01) and check the loss and "
        "the number of classes.",
    ),
    Code.DOUBLE_SOFTMAX: CodeInfo(
        E,
        "probabilities fed to a loss that applies (log-)softmax itself",
        "Remove the final softmax from the model, or use NLLLoss on log-probabilities.",
    ),
    Code.LOSS_BROADCAST: CodeInfo(
        E,
        "loss between tensors of different shapes that silently broadcast",
        "Make output and target shapes equal, e.g. output.squeeze(-1) or target.unsqueeze(-1).",
    ),
    Code.OUTPUT_IGNORES_INPUT: CodeInfo(
        E,
        "model output does not depend on the input",
        "Check that forward() uses its argument, and that no layer zeroes or detaches the signal.",
    ),
    Code.NO_NONLINEARITY: CodeInfo(
        W,
        "the network is (nearly) an affine map of its input",
        "Insert activations between Linear/Conv layers; stacked linear layers collapse into one.",
    ),
    Code.INPUT_SCALE: CodeInfo(
        W,
        "float inputs far from zero-mean, unit-scale",
        "Standardise inputs: (x - mean) / std per feature or channel (e.g. pixels / 255 then "
        "normalise).",
    ),
    Code.DEGENERATE_TARGETS: CodeInfo(
        W,
        "constant targets, or one class for (nearly) the whole batch",
        "Check the label pipeline and shuffling; a batch should contain varied targets.",
    ),
    Code.FROZEN_PARAMETERS: CodeInfo(
        W,
        "parameters with requires_grad=False",
        "If the freeze is intended, ignore this; otherwise set requires_grad=True.",
    ),
    Code.OVERFIT_FAILED: CodeInfo(
        E,
        "the model cannot memorise one small batch",
        "Check capacity (bottlenecks), dead units, the learning rate and the loss function.",
    ),
    Code.LR_RANGE_UNSTABLE: CodeInfo(
        W,
        "no learning-rate range where the loss falls",
        "Check that the data is learnable and the loss decreases at all; widen the LR range.",
    ),
}


@dataclass(frozen=True)
class Finding:
    code: Code
    severity: Severity
    probe: str
    message: str
    where: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "probe": self.probe,
            "message": self.message,
            "where": list(self.where),
            "evidence": self.evidence,
            "hint": self.hint,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            code=Code(data["code"]),
            severity=Severity(data["severity"]),
            probe=data["probe"],
            message=data["message"],
            where=tuple(data.get("where", ())),
            evidence=dict(data.get("evidence", {})),
            hint=data.get("hint", ""),
        )


def finding(
    code: Code,
    probe: str,
    message: str,
    *,
    where: tuple[str, ...] | list[str] = (),
    evidence: dict[str, Any] | None = None,
    hint: str | None = None,
    severity: Severity | None = None,
) -> Finding:
    """Build a finding with the catalog's default severity and hint unless given."""
    info = CATALOG[code]
    return Finding(
        code=code,
        severity=severity or info.severity,
        probe=probe,
        message=message,
        where=tuple(where),
        evidence=dict(evidence or {}),
        hint=info.hint if hint is None else hint,
    )


def at_or_above(
    findings: list[Finding] | tuple[Finding, ...], threshold: Severity
) -> list[Finding]:
    return [f for f in findings if f.severity.rank >= threshold.rank]
