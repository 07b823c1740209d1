"""Reentrant activation checkpointing run inline, for the probes that differentiate with respect
to the inputs (jacobian, dependencies).

`torch.utils.checkpoint(fn, *args, use_reentrant=True)` (and `checkpoint_sequential`, and Hugging
Face models after `gradient_checkpointing_enable()`, whose default it is) wraps `fn` in an
autograd.Function that refuses `torch.autograd.grad` and `backward(inputs=...)`: "incompatible
with .grad()". Checkpointing trades memory for recomputation and changes no value and no
gradient, so those probes run `fn(*args)` directly and measure the same model, keeping its
activations. The probes that train (and the gradient probe, which must see a reentrant
checkpoint cut the path when none of its inputs requires grad) run it as written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class _Inline:
    """Stands in for torch.utils.checkpoint.CheckpointFunction: `checkpoint` calls its `apply`."""

    @staticmethod
    def apply(function: Callable[..., Any], _preserve_rng_state: bool, *args: Any) -> Any:
        return function(*args)


@contextmanager
def inline_reentrant_checkpoints() -> Iterator[None]:
    """Within: a reentrant checkpoint calls its function directly (restored on exit)."""
    from torch.utils import checkpoint

    original = checkpoint.CheckpointFunction
    setattr(checkpoint, "CheckpointFunction", _Inline)  # noqa: B010 (a plain assignment of another class fails mypy)
    try:
        yield
    finally:
        setattr(checkpoint, "CheckpointFunction", original)  # noqa: B010
