"""Orchestration shared by the CLI and the Python API: load, build the context, plan the probes
(selection, providers, budget), run them, link root causes, and return a Report."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nndiag import __version__, budget, causes
from nndiag.config import CheckOptions, Distributed
from nndiag.core.context import (
    Context,
    Definition,
    LossFn,
    OptimizerFactory,
    Progress,
    build_context,
)
from nndiag.core.contract import out_of_memory_errors, user_call
from nndiag.core.optimizers import rebuilt
from nndiag.core.state import preserved_process_state, preserved_rng, seed_everything
from nndiag.core.steps import StepFn
from nndiag.core.tensors import describe
from nndiag.errors import (
    ContractError,
    OptionError,
    RankLost,
    UsageError,
    UserExit,
    collective_failure,
    describe_exception,
)
from nndiag.loading import ModelSpec, load_spec, model_namespace
from nndiag.probes import registry, select, spec
from nndiag.probes.base import ProbeSpec
from nndiag.report import ModelInfo, ProbeResult, Report, Status, Table
from nndiag.settings import Resolved, alias_table, as_dict, nearest, resolve, with_aliases

if TYPE_CHECKING:
    from nndiag.distributed import Session

OPTION_NAMES = {f.name for f in dataclasses.fields(CheckOptions)}
HEAVY_STEPS = 5.0  # plans cheaper than this many training steps are not priced


def check(
    target_or_model: str | os.PathLike[str] | nn.Module,
    batch: Any = None,
    loss_fn: LossFn | None = None,
    probes: Iterable[str] | None = None,
    skip: Iterable[str] | None = None,
    device: str = "auto",
    *,
    make_batch: Callable[[int], Any] | None = None,
    make_loader: Callable[[], Iterable[Any]] | None = None,
    loader: Iterable[Any] | None = None,
    training_step: StepFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    make_optimizer: OptimizerFactory | None = None,
    progress: Progress | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    **options: Any,
) -> Report:
    """Run nndiag's probes on a target ('model.py', 'model.py:factory', 'pkg.mod:attr') or a module.

    With a module, give the data as a `batch`, a `loader` (your DataLoader, iterated as it is),
    a `make_batch(batch_size)` or `make_loader()` callable, or the synthetic-batch options
    (`input_shape=(3, 32, 32)`, `num_classes=10`). The loss is `loss_fn(outputs, targets)` on
    (inputs, targets) batches, or your `training_step(model, batch) -> loss` on batches of any
    shape. `optimizer` is your optimizer instance: nndiag rebuilds the same class with the same
    hyperparameters and parameter groups on its copies (yours is never stepped). Other keyword
    options are CheckOptions' (seed, batch_size, amp, budget, ...) and the aliases of probe
    settings (steps, lr, lr_start, lr_end, range_steps, range_mode, repeats, precision, causal);
    `settings={"activations": {"dead_fraction_max": 0.6}}` sets any probe's setting. The global
    RNG states, default dtype, grad mode, thread count and sys.path are restored on return, and
    the module, its optimizer and its loader's data are never modified.
    """
    sources = [x for x in (batch, make_batch, make_loader, loader) if x is not None]
    if len(sources) > 1:
        raise OptionError("give one of batch, make_batch, make_loader or loader")
    if optimizer is not None and make_optimizer is not None:
        raise OptionError("give either optimizer (an instance) or make_optimizer, not both")
    if optimizer is not None and not isinstance(target_or_model, nn.Module):
        raise OptionError("optimizer= goes with a model object, whose parameters it holds")
    fixed = batch
    definition = Definition(
        make_batch=make_batch or (None if fixed is None else (lambda _n: fixed)),
        make_loader=make_loader or (None if loader is None else (lambda: loader)),
        loss_fn=loss_fn,
        make_optimizer=make_optimizer,
        training_step=training_step,
        optimizer_for=None if optimizer is None else rebuilt(optimizer, target_or_model),  # type: ignore[arg-type]
        optimizer_name="" if optimizer is None else type(optimizer).__name__,
    )
    return check_definition(
        target_or_model, definition, probes=probes, skip=skip, device=device, progress=progress,
        settings=settings, thresholds=thresholds, **options,
    )  # fmt: skip


def check_definition(
    target_or_model: str | os.PathLike[str] | nn.Module,
    definition: Definition,
    *,
    probes: Iterable[str] | None = None,
    skip: Iterable[str] | None = None,
    device: str = "auto",
    progress: Progress | None = None,
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    thresholds: Mapping[str, Any] | None = None,
    **options: Any,
) -> Report:
    """check() on a Definition already assembled (the integrations build theirs from a
    LightningModule or a Hugging Face Trainer)."""
    general, aliased = _split_options(options)
    opts = CheckOptions(device=device, **general)
    if not isinstance(target_or_model, (str, os.PathLike, nn.Module)):
        raise OptionError(
            f"check() takes a target ('model.py', 'pkg.module:attr') or an nn.Module, got "
            f"{type(target_or_model).__name__}"
        )
    names = select(list(probes or []), list(skip or []))
    if not names:
        raise OptionError("no probe selected: --probe and --skip leave nothing to run")
    specs = registry()
    resolved = resolve(specs, with_aliases(settings, aliased), thresholds)
    namespace = (
        nullcontext()
        if isinstance(target_or_model, nn.Module)
        else model_namespace(os.fspath(target_or_model))
    )
    with preserved_process_state(), preserved_rng(), namespace, _distributed(opts) as session:
        if opts.threads:
            torch.set_num_threads(opts.threads)
        seed_everything(opts.seed)
        if session is not None:
            opts = dataclasses.replace(opts, device=str(session.device))
        ctx = _context(target_or_model, opts, definition, progress, session)
        torch.set_grad_enabled(True)  # whatever the model file did at import
        return run_check(ctx, names, resolved)


def _split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    general, aliased = {}, {}
    known = alias_table()
    for key, value in options.items():
        if key in OPTION_NAMES:
            general[key] = value
        elif key in known:
            aliased[key] = value
        else:
            hint = nearest(key, [*OPTION_NAMES, *known])
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
            raise OptionError(f"unknown option {key!r}{suggestion}")
    return general, aliased


def _distributed(opts: CheckOptions) -> AbstractContextManager[Session | None]:
    if opts.distributed is Distributed.NONE:
        return nullcontext()
    from nndiag.distributed import session

    return session(opts.distributed, opts.device)


def _context(
    target_or_model: str | os.PathLike[str] | nn.Module,
    opts: CheckOptions,
    definition: Definition,
    progress: Progress | None,
    session: Session | None,
) -> Context:
    file = None if isinstance(target_or_model, nn.Module) else load_spec(os.fspath(target_or_model))
    sharding: dict[str, Any] = {}
    if session is not None:
        from nndiag.distributed import DistReducer, sharder

        shard_model = file.shard_model if file is not None else None
        sharding = {"reduce": DistReducer(session), "prepare": sharder(session, shard_model)}
    if file is None:
        assert isinstance(target_or_model, nn.Module)
        return build_context(
            target_or_model, opts, target=type(target_or_model).__name__, definition=definition,
            progress=progress, **sharding,
        )  # fmt: skip
    model = user_call(f"{file.target}: the model factory", file.factory)
    if not isinstance(model, nn.Module):
        raise ContractError(
            f"{file.target}: the factory returned {type(model).__name__}, not an nn.Module"
        )
    return build_context(
        model, opts, target=file.target, definition=_completed(definition, file),
        progress=progress, **sharding,
    )  # fmt: skip


def _completed(definition: Definition, file: ModelSpec) -> Definition:
    """The API's callables, and the model file's where the API gave none (every name the two
    share: make_batch, loss_fn, factory, training_step...)."""
    shared = {f.name for f in dataclasses.fields(file)} & {
        f.name for f in dataclasses.fields(definition)
    }
    return dataclasses.replace(
        definition, **{n: getattr(definition, n) or getattr(file, n) for n in sorted(shared)}
    )


def planned(names: list[str], resolved: Resolved) -> list[ProbeSpec[Any, Any]]:
    """The selected specs in run order, with the providers of every hard requirement added."""
    providers = {s.provides: s for s in registry() if s.provides is not None}
    chosen = set(names)
    for name in names:
        for need in spec(name).requires(resolved[name]):
            if need in providers:
                chosen.add(providers[need].name)
    return [s for s in registry() if s.name in chosen]


def run_check(ctx: Context, names: list[str], resolved: Resolved) -> Report:
    started = time.perf_counter()
    specs = planned(names, resolved)
    configs = dict(resolved.configs)
    notes = list(resolved.notes) + list(ctx.notes) + _environment_notes(ctx)
    plan = _budget(ctx, specs, configs, notes)
    results: list[ProbeResult] = []
    interrupted = False
    for s in specs:
        config = plan.configs[s.name] if plan else configs[s.name]
        probe_started = time.perf_counter()
        try:
            result = run_probe(s, ctx, config)
        except KeyboardInterrupt:
            results.append(_partial(s, ctx, time.perf_counter() - probe_started))
            interrupted = True
            break
        if plan and s.name in plan.cuts:
            result = dataclasses.replace(result, cut=plan.cuts[s.name])
        results.append(result)
    seconds = time.perf_counter() - started
    if plan is not None and plan.step_s > 0 and (plan.cuts or seconds >= budget.WORTH_SAYING_S):
        notes.append(
            f"the check took {seconds:.1f} s, {seconds / plan.step_s:.0f} training steps of this "
            f"model (planned {plan.planned_steps:.0f})"
        )
    return Report(
        model=model_info(ctx),
        results=tuple(_linked(results)),
        seconds=seconds,
        interrupted=interrupted,
        notes=tuple(notes),
        settings={
            s.name: as_dict(plan.configs[s.name] if plan else configs[s.name]) for s in specs
        },
        strict=ctx.options.strict,
    )


def run_probe(s: ProbeSpec[Any, Any], ctx: Context, config: Any) -> ProbeResult:
    """Measure, diagnose, present; the RNG is forked and seeded; an exception fails this probe
    only (user code that exits ends the whole check)."""
    started = time.perf_counter()
    ctx.partial.clear()
    if s.trains and not ctx.trainable:
        reason = "every parameter has requires_grad=False: nothing to train"
        return ProbeResult(s.name, Status.SKIPPED, error=reason, headline=f"skipped: {reason}")
    if s.feeds_inputs and ctx.inputs is None:
        reason = (
            "your training_step never calls the model itself (only its submodules), so there "
            "are no model inputs to feed it; call model(...) in the step to enable this probe"
        )
        return ProbeResult(s.name, Status.SKIPPED, error=reason, headline=f"skipped: {reason}")
    if not s.sharded:
        ctx = ctx.replica()
    try:
        with preserved_rng():
            torch.manual_seed(ctx.options.seed)
            measurement = s.measure(ctx, config)
            findings = s.diagnose(measurement, config)
            shown = s.present(measurement, config)
        if s.provide is not None:
            ctx.provided.put(s.provide(measurement, config))
    except out_of_memory_errors():
        return _failed(
            s.name,
            "out of memory: lower --batch-size (or use a smaller model / --device cpu)",
            started,
        )
    except (UserExit, RankLost):
        raise
    except UsageError as exc:
        return _failed(s.name, str(exc), started)
    except Exception as exc:
        if collective_failure(exc):
            raise RankLost(
                f"the {s.name} probe's collective failed: {describe_exception(exc)} (another "
                "rank hangs or died; NNDIAG_COLLECTIVE_TIMEOUT sets the wait in seconds)"
            ) from exc
        return _failed(s.name, describe_exception(exc), started)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # SystemExit from user code inside the probe
        from nndiag.errors import from_user_code

        raise from_user_code(f"the {s.name} probe's calls of user code", exc) from exc
    return ProbeResult(
        name=s.name,
        status=Status.OK,
        seconds=time.perf_counter() - started,
        metrics=shown.metrics,
        tables=shown.tables,
        findings=tuple(findings),
        notes=shown.notes,
        headline=shown.headline,
        watched=shown.watched,
    )


def _failed(name: str, error: str, started: float) -> ProbeResult:
    return ProbeResult(
        name, Status.FAILED, time.perf_counter() - started, error=error, headline=f"failed: {error}"
    )


def _partial(s: ProbeSpec[Any, Any], ctx: Context, seconds: float) -> ProbeResult:
    """The running probe when Ctrl-C (or --timeout) cut it off: the rows it had recorded."""
    tables = tuple(Table(name, tuple(rows)) for name, rows in ctx.partial.items() if rows)
    kept = sum(len(t.rows) for t in tables)
    error = f"interrupted after {seconds:.1f} s" + (f" ({kept} rows recorded)" if kept else "")
    return ProbeResult(
        s.name, Status.INTERRUPTED, seconds, tables=tables, error=error, headline=error
    )


def _linked(results: list[ProbeResult]) -> list[ProbeResult]:
    """Root causes over the whole report, written back into each probe's findings."""
    flat = [f for r in results for f in r.findings]
    linked = iter(causes.link(flat))
    return [
        dataclasses.replace(r, findings=tuple(next(linked) for _ in r.findings)) for r in results
    ]


def _budget(
    ctx: Context, specs: list[ProbeSpec[Any, Any]], configs: dict[str, Any], notes: list[str]
) -> budget.Plan | None:
    """Price the plan with one measured training step; cut what the budget cannot afford."""
    heavy = sum(s.cost(configs[s.name]) for s in specs) >= HEAVY_STEPS
    if not heavy or not ctx.trainable:
        return None
    from nndiag.core.training import after_steps

    limit = budget.parse(ctx.options.budget)
    try:
        step = after_steps(ctx).seconds
        reference = budget.reference_step_s(_step_flops(ctx)) if limit == budget.Budget() else 0.0
    except (UserExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        notes.append(f"no time estimate: one training step failed ({describe_exception(exc)})")
        return None
    plan = budget.plan(specs, configs, step, limit, reference)
    if plan.cuts or plan.estimate_s >= budget.WORTH_SAYING_S:
        text = budget.describe(plan)
        notes.append(text)
        ctx.progress.message(f"nndiag: {text}")
    return plan


def _step_flops(ctx: Context) -> float:
    """The floating-point work of one training step (forward and backward), counted, not timed:
    what sizes the default budget the same way on every machine."""
    from torch.utils.flop_counter import FlopCounterMode

    model = ctx.fresh_model().train()
    with FlopCounterMode(display=False) as counter:
        loss = ctx.run_step(model).loss
        if loss.requires_grad:
            loss.reshape(()).backward()
    return float(counter.get_total_flops())


def _environment_notes(ctx: Context) -> list[str]:
    notes = []
    if ctx.copier.rebuilt_because:
        notes.append(
            f"copies of the model are rebuilt from the factory with your weights: copy.deepcopy "
            f"failed ({ctx.copier.rebuilt_because})"
        )
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )
    threads = torch.get_num_threads()
    if ctx.device.type == "cpu" and threads > cores:
        notes.append(
            f"torch uses {threads} threads on {cores} available cores: oversubscribed, probes may "
            f"run many times slower (set --threads {cores})"
        )
    return notes


def model_info(ctx: Context) -> ModelInfo:
    params = {id(p): p for p in ctx.model.parameters()}.values()
    inputs, targets = ctx.replica().batch  # under torchrun: the whole batch, not this rank's slice
    return ModelInfo(
        target=ctx.target,
        model_class=type(ctx.model).__name__,
        parameters=sum(p.numel() for p in params),
        trainable=sum(p.numel() for p in params if p.requires_grad),
        device=str(ctx.device),
        seed=ctx.options.seed,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        input_shapes=f"{describe(inputs)} -> targets {describe(targets)}",
        nndiag_version=__version__,
        torch_version=torch.__version__,
        batch_size=ctx.source.batch_size,
        batch_origin=ctx.source.origin,
        world_size=ctx.reduce.world,
    )
