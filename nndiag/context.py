"""The shared state every probe receives: the user's model (never mutated), a fixed batch, the loss.

Building a Context validates the whole contract once (model builds, accepts the batch, returns a
supported output, the loss is a scalar), so that each probe can assume a working pipeline and a bad
input becomes one clear UsageError instead of a traceback inside a probe.
"""

from __future__ import annotations

import copy
import itertools
import random
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nndiag import synthetic
from nndiag.config import CheckOptions, Task
from nndiag.errors import UsageError
from nndiag.loading import ModelSpec, describe_exception

Batch = tuple[Any, Tensor]
LossFn = Callable[[Any, Tensor], Tensor]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
EMBED_WIDTH = 8  # width of the fixed random token embedding the synthetic teacher reads
DEFAULT_LR = (
    1e-3  # Adam's default step size (Kingma & Ba 2015), also cs231n's update-ratio reference
)


class Progress(Protocol):
    """Probes report long loops through this; the CLI draws Rich bars, the API draws nothing."""

    def track(
        self, description: str, total: int
    ) -> AbstractContextManager[Callable[[int], None]]: ...


class NullProgress:
    def track(self, description: str, total: int) -> AbstractContextManager[Callable[[int], None]]:
        return nullcontext(lambda advance=1: None)


# ---- tensors in nested inputs ------------------------------------------------------------------


def map_tensors(fn: Callable[[Tensor], Any], obj: Any) -> Any:
    """Apply fn to every tensor inside a Tensor / tuple / list / dict input structure."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, dict):
        return {k: map_tensors(fn, v) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(map_tensors(fn, v) for v in obj)
    return obj


def tensors_in(obj: Any) -> list[Tensor]:
    found: list[Tensor] = []
    map_tensors(found.append, obj)
    return found


def describe(obj: Any) -> str:
    """Shapes and dtypes of a nested structure, e.g. 'Tensor[16, 3, 32, 32] float32'."""
    if isinstance(obj, Tensor):
        return f"Tensor[{', '.join(map(str, obj.shape))}] {str(obj.dtype).removeprefix('torch.')}"
    if isinstance(obj, dict):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (tuple, list)):
        return "(" + ", ".join(describe(v) for v in obj) + ")"
    return type(obj).__name__


def call_model(model: nn.Module, inputs: Any) -> Any:
    """Contract: a dict is passed as keyword arguments, a tuple/list positionally."""
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def eval_mode_backward(model: nn.Module) -> AbstractContextManager[Any]:
    """Kernels that can differentiate `model` in eval mode: cuDNN's RNN kernels refuse a backward
    outside training mode (and have no double backward), the native ones have both. Only models
    with recurrent layers give up cuDNN, and only inside the block (convolutions keep it)."""
    if any(isinstance(m, nn.RNNBase) for m in model.modules()):
        return torch.backends.cudnn.flags(enabled=False)
    return nullcontext()


def as_logits(outputs: Any) -> Tensor:
    """Tensor; tuple/list -> first element; dict or Hugging Face ModelOutput -> 'logits'."""
    if isinstance(outputs, Tensor):
        return outputs
    if isinstance(outputs, dict):  # ModelOutput subclasses OrderedDict
        if "logits" in outputs:
            return as_logits(outputs["logits"])
        if outputs:
            return as_logits(next(iter(outputs.values())))
    if isinstance(outputs, (tuple, list)) and outputs:
        return as_logits(outputs[0])
    raise UsageError(
        f"unsupported model output {describe(outputs)}: return a Tensor, a tuple/list whose first "
        "element is the logits, or a dict / ModelOutput with 'logits'"
    )


def default_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy for integer targets (any leading dims), MSE for float targets."""
    if targets.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).long()
        )
    return F.mse_loss(logits.float(), targets.float())


def is_classification(targets: Tensor) -> bool:
    return not targets.is_floating_point() and targets.dtype != torch.bool


# ---- device and seeds --------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {name} asked for CUDA, but this torch has no usable CUDA GPU"
            )
        index = int(name.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise UsageError("--device mps asked for Apple MPS, but it is not available here")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
    except ImportError:  # numpy is optional for torch
        return
    np.random.seed(seed % 2**32)


def out_of_memory_errors() -> tuple[type[BaseException], ...]:
    # torch.OutOfMemoryError exists from torch 2.5; torch.cuda's alias is older.
    found = {
        getattr(torch, "OutOfMemoryError", None),
        getattr(torch.cuda, "OutOfMemoryError", None),
    }
    return tuple(t for t in found if isinstance(t, type))


# ---- the context -------------------------------------------------------------------------------


@dataclass
class Context:
    target: str
    model: nn.Module  # the user's object: probes never mutate it, they use fresh_model()
    device: torch.device
    options: CheckOptions
    batch: Batch  # fixed batch on `device`, shared by every probe
    next_batch: Callable[
        [], Batch
    ]  # fresh batches on `device` (make_loader / make_batch / synthetic)
    loss_fn: LossFn  # (raw outputs, targets) -> scalar
    make_optimizer: OptimizerFactory | None  # the user's; None means Adam
    task: Task
    user_loss: bool = False
    progress: Progress = field(default_factory=NullProgress)

    def fresh_model(self) -> nn.Module:
        """A deep copy on the probe device, in the user's train/eval mode."""
        return copy.deepcopy(self.model).to(self.device)

    def loss(self, outputs: Any, targets: Tensor) -> Tensor:
        return self.loss_fn(outputs, targets)

    def optimizer(self, model: nn.Module, lr: float | None = None) -> torch.optim.Optimizer:
        """The user's optimizer (or Adam at `lr`, default 1e-3) over the trainable parameters.

        With a user optimizer, `lr` sets the first parameter group's rate and scales the others
        by the same factor, so per-group ratios survive (a lower LR for the backbone, say).
        """
        params = [p for p in model.parameters() if p.requires_grad]
        if self.make_optimizer is None:
            return torch.optim.Adam(params, lr=lr or DEFAULT_LR)
        optimizer = _user_call("make_optimizer(params)", self.make_optimizer, params)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise UsageError(f"make_optimizer must return an Optimizer, got {describe(optimizer)}")
        if lr is not None:
            scale = lr / optimizer.param_groups[0]["lr"]
            for group in optimizer.param_groups:
                group["lr"] *= scale
        return optimizer

    @property
    def inputs(self) -> Any:
        return self.batch[0]

    @property
    def targets(self) -> Tensor:
        return self.batch[1]


def _user_call(description: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{description} raised {describe_exception(exc)}") from exc


def _check_batch(value: Any, source: str) -> Batch:
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise UsageError(f"{source} must return (inputs, targets), got {describe(value)}")
    inputs, targets = value
    if not tensors_in(inputs):
        raise UsageError(f"{source} returned inputs with no tensor: {describe(inputs)}")
    if not isinstance(targets, Tensor):
        raise UsageError(f"{source} must return a Tensor of targets, got {describe(targets)}")
    return inputs, targets


def build_model(spec: ModelSpec) -> nn.Module:
    model = _user_call(f"{spec.target}: model factory", spec.factory)
    if not isinstance(model, nn.Module):
        raise UsageError(
            f"{spec.target}: the factory returned {type(model).__name__}, not an nn.Module"
        )
    return model


def build_context(
    model: nn.Module,
    options: CheckOptions,
    *,
    target: str,
    make_batch: Callable[[int], Any] | None = None,
    make_loader: Callable[[], Iterable[Any]] | None = None,
    loss_fn: LossFn | None = None,
    make_optimizer: OptimizerFactory | None = None,
    progress: Progress | None = None,
) -> Context:
    """Validate the contract end to end and return the context the probes share."""
    if not any(True for _ in model.parameters()):
        raise UsageError(
            f"{type(model).__name__} has no parameters: there is nothing to train or diagnose"
        )
    device = resolve_device(options.device)
    to_device = lambda b: (map_tensors(lambda t: t.to(device), b[0]), b[1].to(device))  # noqa: E731

    source: Callable[[], Batch]
    if make_loader is not None:
        source = _loader_source(make_loader)
    elif make_batch is not None:
        batch_fn = make_batch
        source = lambda: _check_batch(  # noqa: E731
            _user_call(f"make_batch({options.batch_size})", batch_fn, options.batch_size),
            "make_batch",
        )
    else:
        source = _synthetic_source(model, options, device)

    fixed = to_device(source())
    probe_copy = copy.deepcopy(model).to(device)
    outputs = _validate_forward(probe_copy, fixed[0])
    if not probe_copy.training:  # the training probes will run it in train mode
        _validate_forward(probe_copy.train(), fixed[0], " in train mode")
    logits = as_logits(outputs)

    def loss(outputs: Any, targets: Tensor) -> Tensor:
        return loss_fn(outputs, targets) if loss_fn else default_loss(as_logits(outputs), targets)

    with warnings.catch_warnings():  # broadcasting warnings are the init-loss probe's to report
        warnings.simplefilter("ignore", UserWarning)
        value = _user_call("loss_fn" if loss_fn else "the default loss", loss, outputs, fixed[1])
    if not isinstance(value, Tensor) or value.numel() != 1:
        raise UsageError(
            f"the loss must be a scalar Tensor, got {describe(value)} "
            f"(outputs {describe(logits)}, targets {describe(fixed[1])})"
        )
    task = options.task
    if task is Task.AUTO:
        task = Task.CLASSIFICATION if is_classification(fixed[1]) else Task.REGRESSION
    return Context(
        target=target,
        model=model,
        device=device,
        options=options,
        batch=fixed,
        next_batch=lambda: to_device(source()),
        loss_fn=loss,
        make_optimizer=make_optimizer,
        task=task,
        user_loss=loss_fn is not None,
        progress=progress or NullProgress(),
    )


def _validate_forward(model: nn.Module, inputs: Any, mode: str = "") -> Any:
    try:
        with torch.no_grad():
            return call_model(model, inputs)
    except out_of_memory_errors() as exc:
        raise UsageError(
            f"out of memory in the first forward pass on {describe(inputs)}: lower --batch-size"
        ) from exc
    except Exception as exc:
        raise UsageError(
            f"the model rejected the batch {describe(inputs)}{mode}: {describe_exception(exc)}"
        ) from exc


def _loader_source(make_loader: Callable[[], Iterable[Any]]) -> Callable[[], Batch]:
    """Cycle through make_loader(), calling it again when an epoch ends."""
    state: dict[str, Iterator[Any]] = {}

    def next_batch() -> Batch:
        for attempt in range(2):
            if "it" not in state:
                state["it"] = iter(_user_call("make_loader()", make_loader))
            try:
                return _check_batch(next(state["it"]), "make_loader")
            except StopIteration:
                del state["it"]
                if attempt:
                    break
        raise UsageError("make_loader() yielded no batch")

    return next_batch


def _synthetic_source(
    model: nn.Module, options: CheckOptions, device: torch.device
) -> Callable[[], Batch]:
    """Random inputs of --input-shape (token ids with --vocab-size) with learnable targets.

    Targets follow a fixed hidden rule (nndiag.synthetic) so that fresh batches carry signal:
    next tokens of a Markov chain when the model predicts one class per input token (a language
    model), else a fixed random teacher's argmax (classification) or output (regression). Outputs
    of other shapes get random targets. A private torch.Generator leaves the global RNG alone.
    """
    if options.input_shape is None:
        raise UsageError(
            "the model file defines no make_batch/make_loader: pass --input-shape (e.g. 3,32,32), "
            "and --vocab-size for token inputs"
        )
    shape = (options.batch_size, *options.input_shape)
    generator = torch.Generator().manual_seed(options.seed)
    vocab = options.vocab_size

    def draw_inputs() -> Tensor:
        if vocab:
            return torch.randint(0, vocab, shape, generator=generator)
        return torch.randn(shape, generator=generator)

    first = draw_inputs()
    logits = as_logits(_validate_forward(copy.deepcopy(model).to(device), first.to(device)))
    classify = options.task is Task.CLASSIFICATION or (
        options.task is Task.AUTO and (options.num_classes is not None or logits.shape[-1] > 1)
    )
    num_classes = options.num_classes or logits.shape[-1]
    if vocab and classify and tuple(logits.shape[:-1]) == shape and num_classes >= vocab:

        def language_batch() -> Batch:
            stream = synthetic.markov_tokens(
                shape[0], shape[-1] + 1, vocab, generator=generator
            ).reshape(shape[0], -1)
            return stream[:, :-1].reshape(shape), stream[:, 1:].reshape(shape)

        return language_batch

    features = int(torch.tensor(options.input_shape).prod()) * (EMBED_WIDTH if vocab else 1)
    out = num_classes if classify else (logits.shape[-1] if logits.dim() == 2 else 1)
    rule = synthetic.teacher(features, out, task_seed=options.seed + 1)
    embed = torch.randn(
        vocab or 1, EMBED_WIDTH, generator=torch.Generator().manual_seed(options.seed)
    )
    pending = itertools.chain([first], iter(draw_inputs, None))

    def batch() -> Batch:
        x = next(pending)
        if logits.dim() != 2:
            return x, _random_targets(logits, classify, num_classes, generator)
        with torch.no_grad():
            teacher_out = rule((embed[x] if vocab else x).flatten(1))
        return x, teacher_out.argmax(dim=1) if classify else teacher_out

    return batch


def _random_targets(
    logits: Tensor, classify: bool, num_classes: int, generator: torch.Generator
) -> Tensor:
    if classify:
        return torch.randint(0, num_classes, tuple(logits.shape[:-1]), generator=generator)
    return torch.randn(tuple(logits.shape), generator=generator)
