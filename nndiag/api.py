"""Orchestration shared by the CLI and the Python API: load, build the context, run the probes."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import torch
from torch import nn

from nndiag import __version__, thresholds
from nndiag.config import CheckOptions
from nndiag.context import (
    Batch,
    Context,
    LossFn,
    OptimizerFactory,
    Progress,
    build_context,
    build_model,
    describe,
    out_of_memory_errors,
    seed_everything,
)
from nndiag.errors import UsageError
from nndiag.loading import describe_exception, load_spec
from nndiag.probes import ProbeName, load_probe, select
from nndiag.report import ModelInfo, ProbeResult, Report, Status


def check(
    target_or_model: str | nn.Module,
    batch: Batch | None = None,
    loss_fn: LossFn | None = None,
    probes: list[ProbeName | str] | None = None,
    skip: list[ProbeName | str] | None = None,
    device: str = "auto",
    *,
    make_batch: Callable[[int], Batch] | None = None,
    make_optimizer: OptimizerFactory | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Report:
    """Run nndiag's probes on a target ('model.py', 'model.py:factory', 'pkg.mod:attr') or a module.

    With a module, give a `batch` (inputs, targets) or a `make_batch(batch_size)` callable, or the
    synthetic-batch options (`input_shape=(3, 32, 32)`, `num_classes=10`). Extra keyword options are
    those of CheckOptions (seed, batch_size, task, vocab_size, thresholds={"dead_fraction_max":
    0.6}, ...). The global RNG states of
    `random`, numpy and torch are restored on return, and the module is never modified.
    """
    opts = CheckOptions(device=device, **options)
    include = [ProbeName(p) for p in probes or []]
    exclude = [ProbeName(p) for p in skip or []]
    with preserved_rng(), thresholds.overridden(opts.thresholds):
        seed_everything(opts.seed)
        if isinstance(target_or_model, nn.Module):
            fixed = batch
            ctx = build_context(
                target_or_model,
                opts,
                target=type(target_or_model).__name__,
                make_batch=make_batch or (None if fixed is None else (lambda _n: fixed)),
                loss_fn=loss_fn,
                make_optimizer=make_optimizer,
                progress=progress,
            )
        else:
            spec = load_spec(target_or_model)
            ctx = build_context(
                build_model(spec),
                opts,
                target=target_or_model,
                make_batch=spec.make_batch,
                make_loader=spec.make_loader,
                loss_fn=loss_fn or spec.loss_fn,
                make_optimizer=make_optimizer or spec.make_optimizer,
                progress=progress,
            )
        names = select(include, exclude)
        if opts.lr_suggested and ProbeName.OVERFIT in names and ProbeName.LR_RANGE not in names:
            names = select([*names, ProbeName.LR_RANGE])  # --lr suggested needs the range test
        return run_probes(ctx, names)


def run_probes(ctx: Context, names: list[ProbeName]) -> Report:
    started = time.perf_counter()
    results: list[ProbeResult] = []
    interrupted = False
    for name in names:
        try:
            results.append(run_probe(name, ctx))
        except KeyboardInterrupt:
            interrupted = True
            results.append(
                ProbeResult(str(name.value), Status.FAILED, error="interrupted (Ctrl-C)")
            )
            break
        if name is ProbeName.LR_RANGE and ctx.options.lr_suggested:
            ctx.options = _with_suggested_lr(ctx.options, results[-1])
    return Report(
        model=model_info(ctx),
        results=tuple(results),
        seconds=time.perf_counter() - started,
        interrupted=interrupted,
    )


def _with_suggested_lr(options: CheckOptions, lr_range: ProbeResult) -> CheckOptions:
    """`--lr suggested`: later training probes use the range test's pick (their default if none)."""
    suggested = lr_range.metrics.get("suggested_lr")
    return dataclasses.replace(options, lr=suggested if isinstance(suggested, float) else None)


def run_probe(name: ProbeName, ctx: Context) -> ProbeResult:
    """Run one probe with the global RNG forked and seeded; an exception becomes a failed result."""
    started = time.perf_counter()
    try:
        with preserved_rng():
            torch.manual_seed(ctx.options.seed)
            result = load_probe(name)(ctx)
    except out_of_memory_errors():
        error = "out of memory: lower --batch-size (or use a smaller model / --device cpu)"
        result = ProbeResult(name.value, Status.FAILED, error=error)
    except UsageError as exc:
        result = ProbeResult(name.value, Status.FAILED, error=str(exc))
    except Exception as exc:
        result = ProbeResult(name.value, Status.FAILED, error=describe_exception(exc))
    return dataclasses.replace(result, seconds=time.perf_counter() - started)


def model_info(ctx: Context) -> ModelInfo:
    params = {id(p): p for p in ctx.model.parameters()}.values()
    return ModelInfo(
        target=ctx.target,
        model_class=type(ctx.model).__name__,
        parameters=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        device=str(ctx.device),
        seed=ctx.options.seed,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        input_shapes=f"{describe(ctx.inputs)} -> targets {describe(ctx.targets)}",
        nndiag_version=__version__,
        torch_version=torch.__version__,
    )


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore the RNG states of random, numpy, torch CPU and every CUDA device on exit."""
    py_state = random.getstate()
    np_state = _numpy_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            if np_state is not None:
                import numpy as np

                np.random.set_state(np_state)


def _numpy_state() -> Any:
    try:
        import numpy as np
    except ImportError:
        return None
    return np.random.get_state()
