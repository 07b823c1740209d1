"""Process-wide state a check must leave as it found it: RNGs, default dtype, grad mode, threads.

A model file may change any of them at import (`torch.set_default_dtype`, `set_grad_enabled`,
`set_num_threads`); the API restores them on return, and probes run with grad enabled whatever the
file did, so that no finding comes from the caller's or the file's global settings.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    numpy = _numpy()
    if numpy is not None:
        numpy.random.seed(seed % 2**32)


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:  # numpy is optional for torch
        return None
    return numpy


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the RNG states of random, numpy, torch CPU and every initialised CUDA device."""
    py_state = random.getstate()
    numpy = _numpy()
    np_state = numpy.random.get_state() if numpy is not None else None
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            if numpy is not None:
                numpy.random.set_state(np_state)


@contextmanager
def preserved_process_state() -> Iterator[None]:
    """Default dtype, grad mode, thread count and sys.path come back as they were."""
    dtype = torch.get_default_dtype()
    grad = torch.is_grad_enabled()
    threads = torch.get_num_threads()
    path = list(sys.path)
    try:
        yield
    finally:
        torch.set_default_dtype(dtype)
        torch.set_grad_enabled(grad)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        sys.path[:] = path
