"""What a weight's initialisation looks like: fan-in and fan-out of each layout, the fan-out
conventions of torchvision and timm, and the default initialisations a frozen tensor may still
match (a checkpoint that was never loaded)."""

from __future__ import annotations

import math

from torch import Tensor, nn

from nndiag.core.tensors import magnitude64

# A measured std within this factor of a convention's matches it (one tensor's std of 100+
# values has a sampling spread of a few percent).
CONVENTION_RTOL = 0.15
FAN_RATIO_MIN = 2  # a fan-out convention is told from a fan-in one only when fan_in >= 2 fan_out
# A sample std's relative spread is sqrt((κ - 1) / 4n): 0.11 for a uniform (κ = 1.8) at n = 16,
# the smallest tensor judged.
UNIFORM_STD_RTOL = 0.15
MEAN_STANDARD_ERRORS = 4  # a normal init's mean is 0 within this many standard errors
# A normal's kurtosis is 3 (a sample's spread sqrt(24/n): 3 spreads at n = 600); a uniform's is
# 1.8, so 0.6 tells them apart halfway.
KURTOSIS_TOLERANCE = 0.6


def fan_in(module: nn.Module, weight: Tensor | tuple[int, ...]) -> int:
    """Inputs feeding one output unit (from the weight or its shape); Hugging Face's Conv1D
    stores its weight transposed."""
    shape = tuple(weight.shape) if isinstance(weight, Tensor) else weight
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return int(shape[0])
    return int(shape[1] * math.prod(shape[2:]))


def fan_outs(module: nn.Module, shape: tuple[int, ...]) -> set[int]:
    """Fan-out as torch computes it (out x kernel) and as timm does for grouped convs (/groups)."""
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return {int(shape[1])}
    receptive = math.prod(shape[2:])
    plain = int(shape[0] * receptive)
    return {plain, max(1, plain // int(getattr(module, "groups", 1) or 1))}


def fan_out_convention(module: nn.Module, shape: tuple[int, ...], std: float) -> str:
    """The fan-out initialisation the weight was drawn with, or "": He normal with mode fan_out
    (torchvision's ResNets, timm's convolutions: std = √(2/fan_out)) and uniform(±1/√fan_out)
    (timm's EfficientNet and MobileNet classifiers: std = 1/√(3·fan_out)). Only where fan-in is at
    least twice the fan-out: otherwise the same std is also a fan-in init, and a fan-out
    convention explains nothing."""
    if len(shape) < 2 or math.prod(shape) < 16 or not math.isfinite(std):
        return ""
    inputs = fan_in(module, shape)
    for fan in sorted(f for f in fan_outs(module, shape) if inputs >= FAN_RATIO_MIN * f):
        for label, target in (
            ("He fan-out normal", math.sqrt(2 / fan)),
            ("uniform(±1/√fan_out)", 1 / math.sqrt(3 * fan)),
        ):
            if abs(std / target - 1) < CONVENTION_RTOL:
                return f"{label} (fan_out {fan})"
    return ""


def untrained_signature(module: nn.Module, param: Tensor, init_range: float | None) -> str:
    """The default initialisation a tensor still matches exactly, or "" (looks trained, or too
    small to tell): norms at 1 and 0, PyTorch's uniform(±1/√fan_in) for Linear/Conv weights and
    biases, normal(0, σ) for Hugging Face's σ = initializer_range (0.02) and for 1 (embeddings),
    He and Glorot."""
    x = magnitude64(param).flatten()
    if x.numel() < 16:
        return ""
    if bool((x == 1).all()):
        return "all ones (a fresh norm weight)"
    if bool((x == 0).all()):
        return "all zeros (a fresh bias)"
    weight = getattr(module, "weight", None)
    fan = fan_in(module, weight) if isinstance(weight, Tensor) and weight.dim() >= 2 else 0
    if not fan:
        return ""
    bound, std = 1 / math.sqrt(fan), float(x.std())
    if (
        float(x.abs().max()) <= bound * (1 + 1e-6)
        and abs(std / (bound / math.sqrt(3)) - 1) < UNIFORM_STD_RTOL
    ):
        return f"PyTorch's default uniform(±1/√{fan})"
    fan_out = int(weight.shape[0]) if isinstance(weight, Tensor) else fan
    candidates = {
        "normal(0, initializer_range)": init_range or 0.02,
        "normal(0, 1)": 1.0,
        "He normal": math.sqrt(2 / fan),
        "Glorot": math.sqrt(2 / (fan + fan_out)),
    }
    tolerance = 0.03 + 3 / math.sqrt(2 * x.numel())  # the sampling spread of a std estimate
    mean_ok = abs(float(x.mean())) < MEAN_STANDARD_ERRORS * std / math.sqrt(x.numel())
    kurtosis = float(((x - x.mean()) ** 4).mean()) / std**4
    for label, sigma in candidates.items():
        if mean_ok and abs(std / sigma - 1) < tolerance and abs(kurtosis - 3) < KURTOSIS_TOLERANCE:
            return f"{label} = {sigma:.3g}"
    return ""
