"""The state every probe receives: the user's model (never mutated), a fixed batch, the loss.

Building a Context validates the whole contract once (the model builds and copies, accepts the
batch in train and eval mode, returns a supported output, the loss is a scalar, the optimizer
factory works), so that each probe can assume a working pipeline and a bad input becomes one
clear UsageError instead of a traceback inside a probe.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor, nn

from nndiag.config import CheckOptions, Task
from nndiag.core.batches import (
    BatchSource,
    SyntheticSpec,
    from_make_batch,
    from_make_loader,
    share,
    sliced,
    synthetic_source,
)
from nndiag.core.contract import (
    as_logits,
    call_model,
    default_loss,
    is_classification,
    out_of_memory_errors,
    user_call,
)
from nndiag.core.optimizers import OptimizerFor
from nndiag.core.reduce import LocalReducer, Reducer
from nndiag.core.state import preserved_rng
from nndiag.core.steps import StepFn, StepRun, is_scalar, loss_step, run_step
from nndiag.core.tensors import Arguments, describe, map_tensors, rows_of, tensors_in
from nndiag.errors import (
    ContractError,
    OptionError,
    UsageError,
    describe_exception,
    from_user_code,
)
from nndiag.report import Row

LossFn = Callable[[Any, Tensor], Tensor]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
T = TypeVar("T")

DEFAULT_LR = 1e-3  # Adam's default step size (Kingma & Ba 2015), the optimizer when none is given


class Progress(Protocol):
    """Probes report long loops through this; the CLI draws bars or lines, the API nothing."""

    def track(
        self, description: str, total: int
    ) -> AbstractContextManager[Callable[[int], None]]: ...

    def message(self, text: str) -> None: ...


class NullProgress:
    def track(self, description: str, total: int) -> AbstractContextManager[Callable[[int], None]]:
        return nullcontext(lambda advance=1: None)

    def message(self, text: str) -> None:
        """Nothing to show: the API reports through the Report."""


class Provisions:
    """What earlier probes provide to later ones, keyed by type (not by string)."""

    def __init__(self) -> None:
        self._items: dict[type, object] = {}

    def put(self, item: object) -> None:
        self._items[type(item)] = item

    def get(self, kind: type[T]) -> T | None:
        item = self._items.get(kind)
        return item if isinstance(item, kind) else None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionError(f"--device {name} asked for CUDA, but this torch has no usable GPU")
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise OptionError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise OptionError("--device mps asked for Apple MPS, but it is not available here")
    return torch.device(name)


@dataclass
class ModelCopier:
    """Fresh copies of the user's model on the probe device, in the user's train/eval mode.

    A deep copy when the model allows it; otherwise (a lock, an open file, a C++ handle) a new
    build from the factory that receives the user's weights, requires_grad flags and modes.
    """

    model: nn.Module
    device: torch.device
    factory: Callable[[], nn.Module] | None = None
    prepare: Callable[[nn.Module], nn.Module] | None = None  # under torchrun: shards the copy
    init_weights: Callable[[nn.Module], object] | None = None  # for a model built on meta
    seed: int = 0
    rank: int = 0
    rebuilt_because: str = ""
    _staged: nn.Module | None = field(default=None, init=False, repr=False)

    def copy(self) -> nn.Module:
        fresh = self._copy()
        fresh = fresh if self.prepare is None else self.prepare(fresh)
        return self._materialized(fresh) if _on_meta(fresh) else fresh

    def _materialized(self, model: nn.Module) -> nn.Module:
        """A copy of a model built on the meta device, placed (after sharding: each rank holds
        only its shards) and initialised by the model file's init_weights under the check's
        seed. Sharded copies seed each rank apart, or every shard would draw the same values."""
        if self.init_weights is None:
            raise ContractError(
                "the model is on the meta device (no weights): define init_weights(model) in the "
                "model file to initialise it once nndiag has placed it on the device"
            )
        model.to_empty(device=self.device)
        sharded = any(callable(getattr(p, "to_local", None)) for p in model.parameters())
        with preserved_rng(), warnings.catch_warnings():
            # Each rank draws its own shards from its own seed: that is the intent here.
            warnings.filterwarnings("ignore", message="DTensor random operators")
            torch.manual_seed(self.seed + (self.rank if sharded else 0))
            user_call("init_weights(model)", self.init_weights, model)
        return model

    def _copy(self) -> nn.Module:
        if _on_meta(self.model):
            return copy.deepcopy(self.model)
        if not self.rebuilt_because:
            try:
                return copy.deepcopy(self._original()).to(self.device)
            except Exception as exc:
                if self.factory is None:
                    raise ContractError(
                        f"cannot copy the model ({describe_exception(exc)}) and there is no "
                        "factory to rebuild it from: check a model file or pass a module that "
                        "copy.deepcopy accepts"
                    ) from exc
                self.rebuilt_because = describe_exception(exc)
        return self._rebuild()

    def _original(self) -> nn.Module:
        """The user's model, or once a copy of it on the probe device when it lives elsewhere
        (built on the CPU, probed on a GPU) and is small there: each fresh copy is then a copy
        within the device, not another host-to-device transfer (GPT-2 small on an H100: 0.24 s
        a copy, 16 copies in a default check)."""
        if self._staged is None:
            staged = _worth_staging(self.model, self.device)
            self._staged = copy.deepcopy(self.model).to(self.device) if staged else self.model
        return self._staged

    def _rebuild(self) -> nn.Module:
        assert self.factory is not None
        fresh = user_call("the model factory (rebuilding a copy)", self.factory)
        if not isinstance(fresh, nn.Module):
            raise ContractError("the model factory returned something else on a second call")
        fresh.load_state_dict(self.model.state_dict())
        flags = dict(self.model.named_parameters())
        for name, param in fresh.named_parameters():
            param.requires_grad_(flags[name].requires_grad)
        modes = {name: m.training for name, m in self.model.named_modules()}
        for name, module in fresh.named_modules():
            module.training = modes.get(name, module.training)
        return fresh.to(self.device)


def on_device(batch: Any, device: torch.device) -> Any:
    """The batch with every tensor on `device`, whatever holds them (an object with a `.to`
    method, such as a BatchEncoding, is moved by it)."""
    if (
        not isinstance(batch, Tensor)
        and callable(getattr(batch, "to", None))
        and not tensors_in(batch)
    ):
        return batch.to(device)
    return map_tensors(lambda t: t.to(device), batch)


# The largest share of the GPU's free memory a staged copy may take: training a copy holds about
# four model sizes at once (weights, gradients, Adam's two moments) besides the activations, so
# a model that needs more than a tenth of the card for itself keeps paying the transfer instead.
STAGING_SHARE = 0.1


def _worth_staging(model: nn.Module, device: torch.device) -> bool:
    if device.type != "cuda":
        return False
    if device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    tensors = [*model.parameters(), *model.buffers()]
    if not tensors or all(t.device == device for t in tensors):
        return False
    size = sum(t.numel() * t.element_size() for t in tensors)
    free, _total = torch.cuda.mem_get_info(device)
    return size <= STAGING_SHARE * free


def _on_meta(model: nn.Module) -> bool:
    return any(p.is_meta for p in model.parameters())


@dataclass
class Context:
    target: str
    model: nn.Module  # the user's object: probes never mutate it, they use fresh_model()
    device: torch.device
    options: CheckOptions
    batch: Any  # the fixed batch on `device`, as the loader gave it, shared by every probe
    source: BatchSource  # fresh batches (make_loader / make_batch / synthetic), CPU side
    step: StepFn  # (model, batch) -> loss: the user's training_step, or loss_fn on the outputs
    inputs: Any  # the root module's inputs for the fixed batch (Arguments under a training_step;
    # None when the step never calls the model itself: the probes that feed it inputs are off)
    targets: Tensor | None  # the fixed batch's targets; None under a training_step
    optimizer_for: OptimizerFor | None  # builds the user's optimizer on a copy; None means Adam
    optimizer_name: str  # how the report names it ("Adam (nndiag's default)", "SGD")
    task: Task
    copier: ModelCopier
    progress: Progress = field(default_factory=NullProgress)
    provided: Provisions = field(default_factory=Provisions)
    reduce: Reducer = field(default_factory=LocalReducer)
    memo: dict[str, Any] = field(default_factory=dict)  # values computed once per check
    partial: dict[str, list[Row]] = field(default_factory=dict)  # rows of the running probe
    whole: Whole | None = None  # under torchrun: the unsliced batch, as one process sees it
    notes: tuple[str, ...] = ()  # from the definition: what of the user's code was (not) used
    loss_fn: LossFn | None = (
        None  # (outputs, targets) -> loss, the step's; None under a training_step
    )

    def fresh_model(self) -> nn.Module:
        return self.copier.copy()

    def replica(self) -> Context:
        """The check as one process runs it, on every rank alike: unsharded copies, the whole
        batch, no collectives. Under torchrun the probes that are not `sharded` run on it, so
        every rank computes the single-process result and none waits on another."""
        if self.whole is None:
            return self
        w = self.whole
        return dataclasses.replace(
            self, batch=w.batch, source=w.source, inputs=w.inputs, targets=w.targets,
            copier=dataclasses.replace(self.copier, prepare=None), reduce=LocalReducer(), memo={},
            whole=None,
        )  # fmt: skip

    def next_batch(self) -> Any:
        return self.to_device(self.source.draw())

    def to_device(self, batch: Any) -> Any:
        return on_device(batch, self.device)

    def run_step(
        self,
        model: nn.Module,
        batch: Any = None,
        substitute: Callable[[Arguments], Arguments] | None = None,
    ) -> StepRun:
        """The training step on `model` (a copy) and a batch (the fixed one by default), with
        the root module's inputs and outputs captured; `substitute` replaces those inputs."""
        return run_step(self.step, model, self.batch if batch is None else batch, substitute)

    def forward(self, model: nn.Module, batch: Any = None) -> Any:
        """One forward (no gradient) of `model` on a batch (the fixed one by default), for the
        probes that watch it with hooks: the model on its inputs, or, under a training step
        that does not call the model itself (it calls its submodules), the step: its loss."""
        with torch.no_grad():
            if self.paired:
                return call_model(model, (self.batch if batch is None else batch)[0])
            if batch is None and self.inputs is not None:
                return call_model(model, self.inputs)
            run = self.run_step(model, self.batch if batch is None else batch)
            return run.outputs if run.inputs is not None else run.loss

    @property
    def paired(self) -> bool:
        """Batches are (inputs, targets) and the loss is loss_fn(outputs, targets)."""
        return self.source.paired

    def optimizer(self, model: nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
        """The user's optimizer (or Adam at `lr`, default 1e-3) over the trainable parameters.

        With a user optimizer, `lr` sets the first parameter group's rate and scales the others
        by the same factor, so per-group ratios survive (a lower LR for the backbone, say).
        """
        params = [p for p in model.parameters() if p.requires_grad]
        if self.optimizer_for is None:
            return torch.optim.Adam(params, lr=lr or DEFAULT_LR)
        optimizer = _user_optimizer(self.optimizer_for, model)
        if lr is not None:
            scale = lr / optimizer.param_groups[0]["lr"]
            for group in optimizer.param_groups:
                group["lr"] *= scale
        return optimizer

    def recording(self, table: str) -> list[Row]:
        """A list of rows the running probe fills as it goes; shown if the check is cut off."""
        return self.partial.setdefault(table, [])

    @property
    def rows(self) -> int:
        return rows_of(self.batch if self.inputs is None else self.inputs, self.targets)

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.model.parameters())


def _user_optimizer(optimizer_for: OptimizerFor, model: nn.Module) -> torch.optim.Optimizer:
    optimizer = user_call("building your optimizer", optimizer_for, model)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ContractError(
            f"make_optimizer must return a torch.optim.Optimizer, got {describe(optimizer)}"
        )
    from nndiag.core.training import check_drivable

    check_drivable(optimizer)  # before any probe: LBFGS is a one-line error, not a failed probe
    return optimizer


def from_params(make_optimizer: OptimizerFactory) -> OptimizerFor:
    """A model file's make_optimizer(params), over a copy's trainable parameters."""

    def build(model: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        return user_call("make_optimizer(params)", make_optimizer, params)

    return build


@dataclass(frozen=True)
class Definition:
    """The user's callables, from a model file or from the API's arguments."""

    make_batch: Callable[[int], Any] | None = None
    make_loader: Callable[[], Iterable[Any]] | None = None
    loss_fn: LossFn | None = None
    make_optimizer: OptimizerFactory | None = None
    factory: Callable[[], nn.Module] | None = None
    init_weights: Callable[[nn.Module], object] | None = None  # for a model built on meta
    training_step: StepFn | None = None  # (model, batch) -> loss | (loss, outputs)
    optimizer_for: OptimizerFor | None = None  # builds the optimizer on a copy (integrations)
    optimizer_name: str = ""  # how the report names that optimizer
    notes: tuple[str, ...] = ()  # what the report should say about what was (not) used


def build_context(
    model: nn.Module,
    options: CheckOptions,
    *,
    target: str,
    definition: Definition = Definition(),
    progress: Progress | None = None,
    reduce: Reducer | None = None,
    prepare: Callable[[nn.Module], nn.Module] | None = None,
) -> Context:
    """Validate the contract end to end and return the context the probes share."""
    model, definition = _uncompiled(model, definition)
    if not any(True for _ in model.parameters()):
        raise ContractError(
            f"{type(model).__name__} has no parameters: there is nothing to train or diagnose"
        )
    if definition.training_step is not None and definition.loss_fn is not None:
        raise OptionError("give either training_step or loss_fn: the step computes the loss")
    device = resolve_device(options.device)
    reducer = reduce or LocalReducer()
    copier = ModelCopier(
        model, device, definition.factory, prepare, definition.init_weights, options.seed,
        reducer.rank,
    )  # fmt: skip
    probe_copy = copier.copy()
    paired = definition.training_step is None
    source = _source(probe_copy, options, definition, device, paired)
    fixed = source.draw()
    whole = None
    if reducer.world > 1:
        whole = _whole(probe_copy, on_device(fixed, device), source, definition)
        fixed = share(fixed, reducer.rank, reducer.world, paired)
        source = sliced(source, reducer.rank, reducer.world)
    batch = on_device(fixed, device)
    step, loss_fn, inputs, targets, calls = _validated_step(probe_copy, batch, definition)
    optimizer_for = definition.optimizer_for or (
        from_params(definition.make_optimizer) if definition.make_optimizer else None
    )
    if optimizer_for is not None and any(p.requires_grad for p in probe_copy.parameters()):
        _user_optimizer(optimizer_for, probe_copy)
    task = options.task
    if task is Task.AUTO:
        task = _task(targets, calls)
    return Context(
        target=target,
        model=model,
        device=device,
        options=options,
        batch=batch,
        source=source,
        step=step,
        inputs=inputs,
        targets=targets,
        optimizer_for=optimizer_for,
        optimizer_name=_optimizer_name(definition, optimizer_for, probe_copy),
        task=task,
        copier=copier,
        progress=progress or NullProgress(),
        reduce=reducer,
        whole=whole,
        notes=definition.notes,
        loss_fn=loss_fn,
    )


def _uncompiled(model: nn.Module, definition: Definition) -> tuple[nn.Module, Definition]:
    """torch.compile's wrapper unwrapped, with a note: hooks and dispatch modes would see the
    compiled graph's internals (dynamo asserts, run-to-run rounding)."""
    original = getattr(model, "_orig_mod", None)
    if not (isinstance(original, nn.Module) and type(model).__name__ == "OptimizedModule"):
        return model, definition
    note = "checked the original module of the torch.compile'd model (model._orig_mod)"
    return original, dataclasses.replace(definition, notes=(*definition.notes, note))


def _task(targets: Any, calls: set[str]) -> Task:
    """Classification for class-index targets, or a class loss called when the step has no
    targets of its own; regression otherwise."""
    classify = is_classification(targets) if targets is not None else bool(calls & CLASS_LOSSES)
    return Task.CLASSIFICATION if classify else Task.REGRESSION


CLASS_LOSSES = frozenset({"cross_entropy", "nll_loss"})


@dataclass(frozen=True)
class Whole:
    """The unsliced batch under torchrun, with its root inputs and targets: what the replicated
    probes see, so that every rank computes the single-process result."""

    batch: Any
    source: BatchSource
    inputs: Any
    targets: Tensor | None


def _whole(model: nn.Module, batch: Any, source: BatchSource, definition: Definition) -> Whole:
    if definition.training_step is None:
        inputs, targets = batch
        return Whole(batch, source, inputs, targets)
    with torch.no_grad(), preserved_rng():
        return Whole(batch, source, run_step(definition.training_step, model, batch).inputs, None)


def _validated_step(
    model: nn.Module, batch: Any, definition: Definition
) -> tuple[StepFn, LossFn | None, Any, Tensor | None, set[str]]:
    """The step, its loss function, the root module's inputs, the targets (None under a
    training_step, and so is the loss function) and the torch functions the loss called, once
    the contract has been checked on the fixed batch."""
    if definition.training_step is None:
        inputs, targets = batch
        outputs = _validate_forward(model, inputs)
        if not model.training:  # the training probes will run it in train mode
            _validate_forward(model.train(), inputs, " in train mode")
        loss_fn = _loss_function(definition.loss_fn)
        calls = _validate_loss(loss_fn, outputs, targets, user=definition.loss_fn is not None)
        return loss_step(loss_fn), loss_fn, inputs, targets, calls
    step = definition.training_step
    run, calls = _validate_training_step(step, model.train(), batch)
    if run.inputs is not None:
        _validate_forward(model.eval(), run.inputs, " in eval mode")
        model.train()
    return step, None, run.inputs, None, calls


def _validate_training_step(step: StepFn, model: nn.Module, batch: Any) -> tuple[StepRun, set[str]]:
    from nndiag.core.losses import LossObserver

    observer = LossObserver()
    try:
        with torch.no_grad(), warnings.catch_warnings(), observer:
            warnings.simplefilter("ignore", UserWarning)
            run = run_step(step, model, batch)
    except out_of_memory_errors() as exc:
        raise ContractError(
            f"out of memory in the first training step on {describe(batch)}: lower the batch size"
        ) from exc
    except UsageError:
        raise
    except Exception as exc:
        raise ContractError(
            f"training_step(model, batch) raised {describe_exception(exc)} on {describe(batch)}"
        ) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise from_user_code("training_step", exc) from exc
    if not is_scalar(run.loss):
        raise ContractError(f"training_step must return a scalar loss, got {describe(run.loss)}")
    return run, observer.calls


def _optimizer_name(
    definition: Definition, optimizer_for: OptimizerFor | None, model: nn.Module
) -> str:
    if definition.optimizer_name:
        return definition.optimizer_name
    if optimizer_for is None:
        return "Adam (nndiag's default)"
    trainable = any(p.requires_grad for p in model.parameters())
    return type(_user_optimizer(optimizer_for, model)).__name__ if trainable else "none"


def _source(
    model: nn.Module,
    options: CheckOptions,
    definition: Definition,
    device: torch.device,
    paired: bool,
) -> BatchSource:
    has_own = definition.make_loader is not None or definition.make_batch is not None
    if has_own and options.input_shape is not None:
        owner = "make_loader" if definition.make_loader is not None else "make_batch"
        raise OptionError(
            f"--input-shape describes synthetic batches, but the model defines {owner}: drop "
            "--input-shape (or the function) so that only one of them says what a batch is"
        )
    if definition.make_loader is not None:
        if options.batch_size is not None:
            raise OptionError(
                "--batch-size cannot resize the batches of make_loader: set the batch size in "
                "the loader, or drop --batch-size"
            )
        return from_make_loader(definition.make_loader, paired)
    if definition.make_batch is not None:
        return from_make_batch(definition.make_batch, options.batch_size, paired)
    if not paired:
        raise OptionError(
            "a training_step needs your batches: give make_loader (or loader=) or make_batch"
        )
    if options.input_shape is None:
        raise OptionError(
            "the model defines no make_batch/make_loader: pass --input-shape (e.g. 3,32,32), "
            "and --vocab-size for token inputs"
        )
    classify = {Task.CLASSIFICATION: True, Task.REGRESSION: False}.get(options.task)
    spec = SyntheticSpec(
        options.input_shape, options.vocab_size, options.num_classes, classify, options.seed
    )
    return synthetic_source(model, spec, options.batch_size, device)


def _loss_function(user_loss: LossFn | None) -> LossFn:
    if user_loss is None:
        return lambda outputs, targets: default_loss(as_logits(outputs), targets)
    return user_loss


def _validate_forward(model: nn.Module, inputs: Any, mode: str = "") -> Any:
    try:
        with torch.no_grad():
            return call_model(model, inputs)
    except out_of_memory_errors() as exc:
        raise ContractError(
            f"out of memory in the first forward pass on {describe(inputs)}: lower --batch-size"
        ) from exc
    except Exception as exc:
        raise ContractError(
            f"the model rejected the batch {describe(inputs)}{mode}: {describe_exception(exc)}"
        ) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise from_user_code("the model's forward", exc) from exc


def _validate_loss(loss: LossFn, outputs: Any, targets: Tensor, user: bool) -> set[str]:
    """Call the loss once; the torch functions it called (cross_entropy, mse_loss...)."""
    from nndiag.core.losses import LossObserver

    observer = LossObserver()
    with warnings.catch_warnings(), observer:  # broadcasting warnings are init-loss's to report
        warnings.simplefilter("ignore", UserWarning)
        value = user_call("loss_fn" if user else "the default loss", loss, outputs, targets)
    if not is_scalar(value):
        raise ContractError(
            f"the loss must be a scalar Tensor, got {describe(value)} "
            f"(outputs {describe(outputs)}, targets {describe(targets)})"
        )
    return observer.calls
