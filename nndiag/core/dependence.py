"""Does the model's output depend on its input at all? A forward question, asked of every input:
each tensor of a dict or tuple is redrawn alone (floats by noise of the same mean and scale,
token ids by replacement within their range) and the outputs compared. A zero Jacobian whose
forward still moves is a cut gradient path, not an output that ignores its input.

Both forwards of a comparison start from the same RNG state, so dropout, LayerDrop or sampling
in train mode draw the same masks and cannot pass for a dependence.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from nndiag.core.contract import call_model, output_tensor
from nndiag.core.tensors import named_tensors, replace_tensor


def redrawn(t: Tensor, generator: torch.Generator) -> Tensor:
    """An independent draw like `t`: noise of its mean and scale for floats, ids from its range
    for integers (unchanged when it holds a single value: the range of valid ids is unknown).

    Never `t` again: a batch drawn by the user from the same seed as `generator` (tokens from
    torch.manual_seed(0), redrawn from a generator seeded 0) would come back identical, and the
    input would look ignored. Integers move by a random non-zero offset within their range;
    floats are drawn again while they match `t`."""
    if t.is_floating_point():
        scale = t.float().std().nan_to_num(1.0) if t.numel() > 1 else torch.tensor(1.0)
        mean = t.float().mean().nan_to_num(0.0)
        while True:
            noise = torch.randn(t.shape, generator=generator).to(t.device)
            if not torch.allclose(noise, t.float(), rtol=0.0, atol=1e-6):
                return (noise * (scale if scale > 0 else 1.0) + mean).to(t.dtype)
    if t.dtype == torch.bool:
        return ~t
    low, high = int(t.min()), int(t.max())
    if high == low:
        return t
    span = high - low + 1
    offset = torch.randint(1, span, t.shape, generator=generator).to(t.device, t.dtype)
    return (t - low + offset) % span + low


@contextmanager
def same_draws(seed: int) -> Iterator[None]:
    """Run the block from the RNG state `seed` gives (CPU and CUDA), restoring the caller's
    afterwards: two forwards under it draw the same dropout masks."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def _output(model: nn.Module, inputs: Any, seed: int) -> Tensor:
    with same_draws(seed), torch.no_grad():
        return output_tensor(call_model(model, inputs)).detach().double()


def input_that_moves_output(model: nn.Module, inputs: Any, rtol: float, seed: int) -> str | None:
    """The name of the first input tensor ('inputs.input_ids', 'inputs[1]') whose redraw changes
    the output by more than `rtol` of its largest value; None when none does (or none could be
    redrawn: a constant integer input gives no evidence either way, and is not counted)."""
    generator = torch.Generator().manual_seed(seed)
    reference = _output(model, inputs, seed)
    if not torch.isfinite(reference).all():
        return None
    scale = float(reference.abs().max()) if reference.numel() else 0.0
    for index, (name, t) in enumerate(named_tensors(inputs, "inputs")):
        fresh = redrawn(t, generator)
        if torch.equal(fresh, t):
            continue
        other = _output(model, replace_tensor(inputs, index, fresh), seed)
        if other.shape != reference.shape:
            return name
        if float((other - reference).abs().max()) > rtol * scale:
            return name
    return None


def any_input_varies(inputs: Any) -> bool:
    """Whether some input can be redrawn at all (a batch of one constant token cannot)."""
    generator = torch.Generator().manual_seed(0)
    return any(not torch.equal(redrawn(t, generator), t) for _, t in named_tensors(inputs, "x"))
