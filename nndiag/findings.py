"""Findings: the stable, public vocabulary of nndiag's diagnoses.

Finding codes are a public API (users grep them, CI keys on them): a code may be added, never
renamed. CATALOG is the one table of every code: its default severity, its one-line title and
hint, and its status; its page is nndiag/codes/<code>.md (`nndiag explain`). Which probes raise a
code is declared by each probe (`ProbeSpec.raises`), and derived here by `nndiag.probes.raised_by`.
This module imports nothing heavy so that the CLI's help and `nndiag explain` stay fast.
"""

from __future__ import annotations

from collections.abc import Mapping
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


class CodeStatus(StrEnum):
    """A code's lifecycle: codes are a public API, deprecated rather than renamed."""

    STABLE = "stable"
    DEPRECATED = "deprecated"


class Code(StrEnum):
    NONFINITE_VALUES = "nonfinite-values"
    NO_GRADIENT = "no-gradient"
    GATED_AT_INIT = "gated-at-init"
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
    UNLEARNABLE_DATA = "unlearnable-data"
    BATCH_MIXING = "batch-mixing"
    CAUSAL_LEAK = "causal-leak"
    PRECISION_OVERFLOW = "precision-overflow"
    PRECISION_UNDERFLOW = "precision-underflow"
    UNREGISTERED_PARAMETERS = "unregistered-parameters"
    NONDETERMINISTIC_FORWARD = "nondeterministic-forward"
    IGNORED_TARGETS = "ignored-targets"


@dataclass(frozen=True)
class CodeInfo:
    severity: Severity
    title: str
    hint: str
    status: CodeStatus = CodeStatus.STABLE
    page: str = ""  # Markdown for `nndiag explain`; built-in codes ship nndiag/codes/<code>.md


E, W, I = Severity.ERROR, Severity.WARNING, Severity.INFO  # noqa: E741 (the catalogue's columns)

CATALOG: dict[str, CodeInfo] = {
    Code.NONFINITE_VALUES: CodeInfo(
        E,
        "NaN/Inf in inputs, outputs, loss or gradients",
        "Find the first module named in the finding; check for log(0), division by zero, "
        "overflowing exp, or NaN already present in the data.",
    ),
    Code.NO_GRADIENT: CodeInfo(
        E,
        "trainable parameters get no gradient from the loss, even after a few steps",
        "Look for .detach(), .item(), torch.no_grad() or .data in the forward path, or modules "
        "that are built but never called.",
    ),
    Code.GATED_AT_INIT: CodeInfo(
        I,
        "zero at init by design (a gate, LayerScale, an adapter): gradients flow after a step",
        "Nothing to do when the zero gate is intended (ReZero, LoRA's B = 0, adaLN-Zero, a "
        "zero-initialised output layer).",
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
        "frozen parameters that look untrained (a checkpoint not loaded?), or all of them",
        "If the freeze is intended, load the trained weights before freezing; otherwise set "
        "requires_grad=True.",
    ),
    Code.OVERFIT_FAILED: CodeInfo(
        E,
        "the model cannot memorise one small batch",
        "Check capacity (bottlenecks), dead units, the learning rate and the loss function.",
    ),
    Code.LR_RANGE_UNSTABLE: CodeInfo(
        W,
        "on learnable data, no learning-rate range where the loss falls",
        "Check that the loss decreases at all (overfit probe); widen the LR range.",
    ),
    Code.UNLEARNABLE_DATA: CodeInfo(
        I,
        "targets cannot be predicted from inputs across batches (random labels per call?)",
        "If make_batch draws labels independently of the inputs, that is expected; otherwise "
        "check that inputs and targets stay paired in the data pipeline.",
    ),
    Code.BATCH_MIXING: CodeInfo(
        E,
        "an example's output depends on other examples' inputs (in eval mode)",
        "Look for a softmax/mean/sum over dim 0, a view/reshape that swaps batch and time, or a "
        "recurrent layer missing batch_first=True.",
    ),
    Code.CAUSAL_LEAK: CodeInfo(
        E,
        "a next-token model's output at position t depends on inputs after t",
        "Apply a causal mask in attention (is_causal=True / a lower-triangular mask) and check "
        "reshapes that mix positions.",
    ),
    Code.PRECISION_OVERFLOW: CodeInfo(
        E,
        "non-finite values under fp16/bf16 autocast at init where fp32 is finite",
        "Scale the offending activations down (init, normalisation), or train in bf16.",
    ),
    Code.PRECISION_UNDERFLOW: CodeInfo(
        W,
        "many gradients flush to zero in fp16 without loss scaling",
        "Use torch.amp.GradScaler with fp16, or train in bf16.",
    ),
    Code.UNREGISTERED_PARAMETERS: CodeInfo(
        E,
        "tensors that take part in the forward pass and require grad, outside model.parameters()",
        "Hold layers in nn.ModuleList/nn.ModuleDict, weights in nn.Parameter, and build layers "
        "in __init__, not in forward.",
    ),
    Code.IGNORED_TARGETS: CodeInfo(
        E,
        "every target equals ignore_index: the loss has nothing to average",
        "Check the label pipeline: a masking or padding step that sets every label to "
        "ignore_index (-100), e.g. a shift applied twice or a mask inverted.",
    ),
    Code.NONDETERMINISTIC_FORWARD: CodeInfo(
        E,
        "two eval-mode forwards of the same batch disagree",
        "Build layers in __init__; use nn.Dropout (off in eval) for randomness; do not keep "
        "state between calls.",
    ),
}


@dataclass(frozen=True)
class Cause:
    """The root cause a consequence is attributed to: its code and where it was found."""

    code: str
    where: tuple[str, ...] = ()


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    probe: str
    message: str
    where: tuple[str, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)
    hint: str = ""
    caused_by: Cause | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": str(self.code),
            "severity": self.severity.value,
            "probe": self.probe,
            "message": self.message,
            "where": list(self.where),
            "evidence": self.evidence,
            "hint": self.hint,
            "caused_by": None
            if self.caused_by is None
            else {"code": self.caused_by.code, "where": list(self.caused_by.where)},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        cause = data.get("caused_by")
        return cls(
            code=str(data["code"]),
            severity=Severity(data["severity"]),
            probe=data["probe"],
            message=data["message"],
            where=tuple(data.get("where", ())),
            evidence=dict(data.get("evidence", {})),
            hint=data.get("hint", ""),
            caused_by=None if cause is None else Cause(cause["code"], tuple(cause["where"])),
        )


def finding(
    code: str,
    probe: str,
    message: str,
    *,
    where: tuple[str, ...] | list[str] = (),
    evidence: dict[str, Any] | None = None,
    hint: str | None = None,
    severity: Severity | None = None,
    catalog: Mapping[str, CodeInfo] = CATALOG,
) -> Finding:
    """Build a finding with the catalog's default severity and hint unless given."""
    info = catalog[code]
    return Finding(
        code=str(code),
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
