"""jacobian: signal propagation at init through the input-output Jacobian J = ∂f(x)/∂x.

Pennington, Schoenholz & Ganguli 2017 ("Resurrecting the sigmoid"); Schoenholz et al. 2017 ("Deep
information propagation"); Philipp, Song & Carbonell 2018 ("The exploding gradient problem
demystified"). A network trains well when J is close to an isometry: gradients neither grow nor
shrink exponentially from block to block, and no direction is amplified far beyond the others.

Measured on a copy in eval mode (dropout off) after BatchNorm running statistics are calibrated on
a few batches, with all parameters frozen so that each backward pass computes only what J needs.

- Per-block profile (Hutchinson): g_l = sqrt(mean over k of ‖δ_l‖²) estimates ‖J_{l→L}‖_F, and
  gain_l = g_(l-1) / g_l is block l's backward gain. Total norms, not per-unit ones: for
  fan-in-scaled init E‖Wᵀδ‖² = fan_in·Var(W)·‖δ‖² does not depend on the layer's widths.
- End to end: ‖J‖_F² / d = the mean squared singular value (d = min(d_in, d_out) per example);
  σ_max by Lanczos on JᵀJ; isometry spread σ_max² / mean σ².
- Nonlinearity: ‖f(x̄) − (f(a) + f(b))/2‖ / ‖f(a) − f(b)‖ for x̄ = (a + b)/2; zero for affine f.
- Sequences: sensitivity of the output at the last step to the input at each step, the memory
  horizon, and the spectral radius of each recurrent weight matrix.

A Jacobian that is exactly zero, or an affine network, at init is measured again on a copy a few
optimizer steps into training: zero gates by design (a zero output layer, ReZero) open there.
For integer (token) inputs, x is the first floating-point activation (the embedding output).
Modules: measuring, estimators, sequences, diagnosis; f(x) itself is nndiag.core.surface.
See docs/probes/jacobian.md.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nndiag.findings import Code
from nndiag.probes.base import Presentation, ProbeSpec, setting
from nndiag.probes.jacobian.diagnosis import diagnose
from nndiag.report import Highlight, Row, Table

if TYPE_CHECKING:
    from nndiag.core.context import Context

NAME = "jacobian"


@dataclass(frozen=True)
class Config:
    hutchinson_probes: int = setting(
        4,
        "random vectors of the Hutchinson estimates",
        source="relative standard error of ‖J‖_F² at most sqrt(2/k), far smaller for wide layers; "
        "4 keeps the probe at ~k+2 backward passes",
        low=1,
    )
    spectral_iterations: int = setting(
        30,
        "Lanczos products at most for σ_max",
        source="the benchmark models converge in 7 to 14 products",
        low=1,
    )
    spectral_tolerance: float = setting(
        1e-3,
        "Lanczos stops when the largest Ritz value changes by less than this, relative",
        source="within 0.4% of a reference converged to 1e-8 on the benchmark models",
        low=0.0,
    )
    calibration_batches: int = setting(
        4,
        "batches averaged into BatchNorm running statistics",
        source="a cumulative average",
        low=1,
    )
    max_examples: int = setting(
        16,
        "examples of the batch the probe differentiates (its statistics are per example)",
        source="the default batch; fewer under a tight --budget",
        low=1,
    )
    gain_explode: float = setting(
        1e3,
        "exploding when the backward gain from the output block to the input exceeds this",
        source="three decades, AutoTrainer's factor; healthy samples and tiny GPT-2/BERT/LSTM "
        "measure 0.013..4.1, 12 ReLU layers at 2.5x He 3e4",
        low=1.0,
    )
    gain_vanish: float = setting(
        1e-3,
        "vanishing when that gain is below this",
        source="the same three decades; 16 sigmoid layers measure 2e-14, 12 ReLU layers at "
        "PyTorch's default init 1e-5",
        low=0.0,
    )
    min_profile_blocks: int = setting(
        3,
        "blocks on the gradient path needed to speak of depth",
        source="two blocks give one ratio, indistinguishable from one odd block; three give a "
        "trend (the same reasoning as the gradients probe's min_profile_layers)",
        low=2,
    )
    nonlinearity_min: float = setting(
        1e-5,
        "a nonlinearity score below this is an affine network",
        source="an affine stack scores at float32 round-off (six Linear layers: 2.7e-7), a ReLU "
        "MLP ~1e-1; 1e-5 is ~40x round-off. Registry sweep (tuning half): MobileBERT at init, "
        "its residual stream dominating two small-init layers, scores 7e-5 and trains",
        low=0.0,
    )
    horizon_fraction: float = setting(
        1e-3,
        "the memory horizon ends where the sensitivity falls below this fraction of the last step's",
        source="three decades, as for depth",
        low=0.0,
    )
    temporal_growth_max: float = setting(
        1e3,
        "exploding through time when the first step is more than this times as sensitive as the last",
        source="three decades, as for depth",
        low=1.0,
    )
    short_horizon_fraction: float = setting(
        0.25,
        "a recurrent model whose horizon is under this share of the sequence forgets too fast",
        source="an LSTM at default init keeps 14 of 32 steps (0.44); a tanh RNN with radius 0.3 ~6",
        low=0.0,
        high=1.0,
    )
    min_sequence: int = setting(
        8,
        "sequences shorter than this get no temporal profile",
        source="short_horizon_fraction 0.25 of 8 steps is 2: below 8 a horizon of one step would "
        "already be 'short'",
        low=2,
    )
    gate_opening_min: float = setting(
        10.0,
        "a vanishing gain that grows at least this many times within the confirmation steps is "
        "a gate opening (LayerScale, class attention, ReZero), reported as gated-at-init",
        source="CaiT (LayerScale 1e-5) gains ~300x in 3 Adam steps; 16 sigmoid layers and 12 "
        "ReLU layers at PyTorch's default init move by less than 2x",
        low=1.0,
    )
    same_output_rtol: float = setting(
        1e-6,
        "a zero Jacobian is an output that ignores its input only if redrawing each input moves "
        "the output by at most this, relative to its largest value",
        source="float32 round-off; a forward that depends on its input moves it by far more",
        low=0.0,
    )


@dataclass(frozen=True)
class Zero:
    """An exactly zero Jacobian: an input that still moves the output ('' if none: the output
    ignores its input), and whether it is still zero after the confirmation steps."""

    output_moves_with: str
    zero_after_steps: bool | None


@dataclass(frozen=True)
class Spectrum:
    """‖J‖_F² (Hutchinson), the mean squared singular value per example, σ_max (Lanczos) and
    their ratio, the isometry spread (1 for a dynamically isometric network)."""

    examples: int
    frobenius_sq: float
    frobenius_rel_stderr: float
    mean_sq_singular: float
    spectral_norm: float
    spectral_products: int
    isometry_spread: float


@dataclass(frozen=True)
class Depth:
    """The output-to-input gain over the blocks on the gradient path, its slope, and the gain
    on the confirmation copy where the init's is out of bounds (None: not needed)."""

    total_gain: float
    log10_gain_per_block: float
    total_gain_after_steps: float | None = None


@dataclass(frozen=True)
class Memory:
    """Through time: how many steps back the last output still feels, of how many, the first
    step's sensitivity over the last's (and on the confirmation copy where it is too high)."""

    memory_horizon: int
    sequence_length: int
    earliest_over_last: float
    recurrent: bool  # an nn.RNNBase in the model: forgetting is its problem to have
    earliest_over_last_after_steps: float | None = None


@dataclass(frozen=True)
class Measurement:
    measured_from: str  # "input", or the output of the module whose output is differentiated
    blocks: tuple[Row, ...] = ()
    zero: Zero | None = None  # an exactly zero Jacobian: nothing below is measured
    spectrum: Spectrum | None = None
    depth: Depth | None = None
    nonlinearity: float = math.nan
    nonlinearity_after_steps: float | None = None
    memory: Memory | None = None
    temporal: tuple[Row, ...] = ()
    recurrent: tuple[Row, ...] = ()
    max_recurrent_radius: float | None = None
    hutchinson_probes: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def profiled_blocks(self) -> int:
        return max(0, len(self.blocks) - 1)

    def metrics(self) -> dict[str, Any]:
        """The report's flat metrics (a public JSON shape): what was measured, unmeasured
        confirmations left out."""
        parts: dict[str, Any] = {"measured_from": self.measured_from,
                                 "zero_jacobian": self.zero is not None}  # fmt: skip
        if self.zero is not None:
            return {**parts, "frobenius_sq": 0.0, **dataclasses.asdict(self.zero)}
        parts |= {"blocks": self.profiled_blocks, "probes": self.hutchinson_probes}
        for measured in (self.spectrum, self.depth):
            parts |= dataclasses.asdict(measured) if measured is not None else {}
        parts |= {"nonlinearity": self.nonlinearity,
                  "nonlinearity_after_steps": self.nonlinearity_after_steps}  # fmt: skip
        parts |= dataclasses.asdict(self.memory) if self.memory is not None else {}
        parts["max_recurrent_radius"] = self.max_recurrent_radius
        return {k: v for k, v in parts.items() if v is not None}


def passes(config: Config) -> int:
    """Backward passes at most: the profile's and the temporal profile's probes, Lanczos."""
    return 2 * config.hutchinson_probes + config.spectral_iterations


def measure(ctx: Context, config: Config) -> Measurement:
    from nndiag.core.checkpointing import inline_reentrant_checkpoints
    from nndiag.probes.jacobian.measuring import measure_jacobian

    with inline_reentrant_checkpoints(), ctx.progress.track("jacobian", passes(config)) as advance:
        return measure_jacobian(ctx, config, advance)


def present(m: Measurement, config: Config) -> Presentation:
    tables = [Table("blocks", m.blocks, tuple(_highlights(list(m.blocks))), key="block",
                    watch=("grad_norm", "gain"))]  # fmt: skip
    if m.temporal:
        tables.append(Table("temporal", m.temporal, key="step"))
    if m.recurrent:
        tables.append(Table("recurrent", m.recurrent, key="parameter"))
    return Presentation(_headline(m), m.metrics(), tuple(tables), m.notes, watched=("total_gain",))


def _headline(m: Measurement) -> str:
    if m.zero is not None:
        headline = f"zero Jacobian with respect to the {m.measured_from}"
        if m.zero.output_moves_with:
            headline += (
                f", though the output changes with {m.zero.output_moves_with}: the gradient "
                "path is cut (no-gradient in the gradients probe names where)"
            )
        return headline
    gain = m.depth.total_gain if m.depth is not None else math.nan
    sigma = m.spectrum.spectral_norm if m.spectrum is not None else math.nan
    headline = (f"gain {gain:.3g} over {m.profiled_blocks} blocks, σmax {sigma:.3g}, "
                f"nonlinearity {m.nonlinearity:.2g}")  # fmt: skip
    if m.memory is not None:
        headline += f", memory {m.memory.memory_horizon}/{m.memory.sequence_length} steps"
    return headline


def _highlights(rows: list[Row]) -> list[Highlight]:
    from nndiag.findings import Severity

    low, high = 1e-3 ** (1 / 4), 1e3 ** (1 / 4)
    return [
        Highlight(i, "gain", Severity.WARNING)
        for i, r in enumerate(rows)
        if math.isfinite(r.get("gain", math.nan)) and not low <= r["gain"] <= high
    ]


def block_rows(
    norms_sq: dict[int, list[float]],
    names: list[str],
    types: list[str],
    joins: frozenset[int] = frozenset(),
) -> list[Row]:
    """Rows from the input (x) to the output block; gain_l = g_(l-1) / g_l, except into a block
    where a second stream joins (no step of depth: see measuring._gains)."""
    rows: list[Row] = []
    for i in [-1, *range(len(names))]:
        samples = norms_sq.get(i)
        if samples is None:
            continue  # not downstream of x, or not on the path to the output
        norm = math.sqrt(sum(samples) / len(samples))
        per_probe = [math.sqrt(s) for s in samples]
        spread = (max(per_probe) - min(per_probe)) / norm if norm > 0 else math.nan
        rows.append(
            {
                "block": "x (input)" if i < 0 else names[i],
                "type": "" if i < 0 else types[i],
                "grad_norm": norm,
                "probe_spread": spread,
                "joins": i in joins,
            }
        )
    for before, row in itertools.pairwise(rows):
        step = row["grad_norm"] > 0 and not row["joins"]
        before["gain"] = before["grad_norm"] / row["grad_norm"] if step else math.nan
    if rows:
        rows[-1]["gain"] = math.nan  # the output block: no later block to compare with
    return rows


def shrink(config: Config, factor: float) -> tuple[Config, str]:
    """Fewer Lanczos products, probes and examples under a tight budget."""
    iterations = max(3, round(config.spectral_iterations * factor))
    examples = max(1, round(config.max_examples * factor))
    probes = max(2, round(config.hutchinson_probes * min(1.0, factor * 2)))
    smaller = dataclasses.replace(
        config, spectral_iterations=iterations, max_examples=examples, hutchinson_probes=probes
    )
    cut = (
        f"at most {iterations} Lanczos products (σ_max may be underestimated), {probes} "
        f"Hutchinson probes, {examples} examples"
    )
    return smaller, cut


def cost(config: Config) -> float:
    """Training-step equivalents: a backward pass is ~2/3 of a step, a Lanczos product (double
    backward and backward) ~2 steps and Lanczos stops after about half its allowance, all on
    max_examples of a batch of about 16; plus the calibration and nonlinearity forwards."""
    share = min(1.0, config.max_examples / 16)
    passes = 0.7 * 2 * config.hutchinson_probes + 2.0 * min(15, config.spectral_iterations / 2)
    return share * passes + 1.5


SPEC = ProbeSpec(
    name=NAME,
    raises=(
        Code.NONFINITE_VALUES,
        Code.GATED_AT_INIT,
        Code.EXPLODING_GRADIENTS,
        Code.VANISHING_GRADIENTS,
        Code.OUTPUT_IGNORES_INPUT,
        Code.NO_NONLINEARITY,
    ),
    feeds_inputs=True,
    summary="input-output Jacobian: per-block gains, Frobenius and spectral norms, nonlinearity, "
    "memory through time",
    config=Config,
    measure=measure,
    diagnose=diagnose,
    present=present,
    cost=cost,
    shrink=shrink,
    order=70,
)
