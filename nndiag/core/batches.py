"""Where batches come from: make_loader, make_batch, or nndiag's learnable synthetic task.

A BatchSource draws validated (inputs, targets) pairs on the CPU side of the contract; the
context moves them to the probe device. Every draw may be a fresh random batch (docs/contract.md).
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from nndiag import synthetic
from nndiag.core.contract import as_logits, call_model, user_call
from nndiag.core.tensors import describe, rows_of, take_examples, tensors_in, tied_input
from nndiag.errors import ContractError, OptionError

Batch = tuple[Any, Tensor]
DEFAULT_BATCH_SIZE = 16  # TheDeepChecker's overfit batch; the batch size when nothing says more
EMBED_WIDTH = 8  # width of the fixed random token embedding the synthetic teacher reads
MAX_SYNTHETIC_ELEMENTS = 2**28  # 1 GiB of float32 inputs per synthetic batch


@dataclass(frozen=True)
class BatchSource:
    """Fresh batches, and the batch size they are drawn at with where that number came from."""

    draw: Callable[[], Any]
    batch_size: int
    origin: str  # "--batch-size", "make_batch's default", "make_loader's batch", "default"
    kind: str  # "make_loader", "make_batch" or "synthetic"
    paired: bool = True  # batches are (inputs, targets); False: as the loader yields them


def sliced(source: BatchSource, rank: int, world: int) -> BatchSource:
    """Under torchrun every rank draws the same batch (same seed) and keeps its own slice of
    the examples, so the ranks together see exactly the batch one process would."""
    return dataclasses.replace(
        source, draw=lambda: share(source.draw(), rank, world, source.paired)
    )


def examples(batch: Any, paired: bool) -> int:
    """How many examples a batch holds: the targets' leading size for (inputs, targets), else
    the first tensor's."""
    return rows_of(batch[0], batch[1]) if paired else rows_of(batch)


def share(batch: Any, rank: int, world: int, paired: bool = True) -> Any:
    """Rank `rank`'s slice of the examples: [rank·B/W, (rank+1)·B/W), of every tensor laid out
    by example."""
    rows = examples(batch, paired)
    tied = tied_input(batch, rows)
    if tied:
        raise OptionError(
            f"{tied} is not laid out by example (a graph's edges?): the batch cannot be split "
            "across ranks; check it in one process"
        )
    if rows % world:
        raise OptionError(
            f"the batch has {rows} examples, which {world} ranks cannot share evenly: use a "
            f"--batch-size divisible by {world}"
        )
    part = slice(rank * rows // world, (rank + 1) * rows // world)
    return take_examples(batch, part, rows)


def check_batch(value: Any, source: str, paired: bool = True) -> Any:
    """(inputs, targets) for the loss_fn contract; with a training_step, any structure that
    holds a tensor, as the loader yields it."""
    if not paired:
        tensors = tensors_in(value)
        if not tensors and not hasattr(value, "to"):
            raise ContractError(f"{source} returned a batch with no tensor: {describe(value)}")
        if any(t.dim() and t.shape[0] == 0 for t in tensors):
            raise ContractError(f"{source} returned a batch with zero rows ({describe(value)})")
        return value
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise ContractError(f"{source} must return (inputs, targets), got {describe(value)}")
    inputs, targets = value
    if not tensors_in(inputs):
        raise ContractError(f"{source} returned inputs with no tensor: {describe(inputs)}")
    if not isinstance(targets, Tensor):
        raise ContractError(
            f"{source} must return a Tensor of targets, got {describe(targets)}; for structured "
            "targets (boxes and labels, several tasks) define training_step(model, batch) -> loss"
        )
    empty = [t for t in (targets, *tensors_in(inputs)) if t.dim() and t.shape[0] == 0]
    if empty:
        raise ContractError(
            f"{source} returned a batch with zero rows ({describe(inputs)} -> {describe(targets)}):"
            " a batch needs at least one example"
        )
    return inputs, targets


def default_batch_size(make_batch: Callable[..., Any]) -> int | None:
    """The default of make_batch's first parameter (`def make_batch(batch_size=256)`), if any."""
    try:
        parameters = list(inspect.signature(make_batch).parameters.values())
    except (TypeError, ValueError):
        return None
    if not parameters:
        return None
    default = parameters[0].default
    is_int = isinstance(default, int) and not isinstance(default, bool)
    return default if is_int and default > 0 else None


def from_make_batch(
    make_batch: Callable[[int], Any], batch_size: int | None, paired: bool = True
) -> BatchSource:
    default = default_batch_size(make_batch)
    size = batch_size or default or DEFAULT_BATCH_SIZE
    origin = "--batch-size" if batch_size else ("make_batch's default" if default else "default")
    description = f"make_batch({size})"
    return BatchSource(
        lambda: check_batch(user_call(description, make_batch, size), "make_batch", paired),
        size,
        origin,
        "make_batch",
        paired,
    )


_END = object()


def from_make_loader(make_loader: Callable[[], Iterable[Any]], paired: bool = True) -> BatchSource:
    """Cycle through make_loader(), calling it again when an epoch ends."""
    state: dict[str, Any] = {"drawn": 0}

    def restart() -> Iterator[Any]:
        loader = user_call("make_loader()", make_loader)
        try:
            return iter(loader)
        except TypeError:
            raise ContractError(
                f"make_loader() must return an iterable of (inputs, targets), got "
                f"{describe(loader)}"
            ) from None

    def draw() -> Any:
        for _ in range(2):  # one restart: an epoch may end between two draws
            if "it" not in state:
                state["it"] = restart()
            item = user_call("iterating make_loader()", next, state["it"], _END)
            if item is not _END:
                state["drawn"] += 1
                return check_batch(item, "make_loader", paired)
            del state["it"]
        if state["drawn"]:
            raise ContractError(
                f"make_loader() yielded {state['drawn']} batch(es), then nothing when called again "
                "for a new epoch: it returns an exhausted iterator; return a new iterable (a "
                "DataLoader, a generator function's result) on every call"
            )
        raise ContractError("make_loader() yielded no batch")

    first = draw()
    pending = itertools.chain([first], iter(draw, None))
    size = examples(first, paired)
    return BatchSource(lambda: next(pending), size, "make_loader's batch", "make_loader", paired)


@dataclass(frozen=True)
class SyntheticSpec:
    input_shape: tuple[int, ...]
    vocab_size: int | None
    num_classes: int | None
    classify: bool | None  # None: decide from the model's output
    seed: int


def _batch_elements(input_shape: tuple[int, ...], size: int) -> int:
    """Values in one synthetic batch; too many means the shape given included the batch."""
    elements = size * math.prod(input_shape)
    if elements > MAX_SYNTHETIC_ELEMENTS:
        raise OptionError(
            f"--input-shape {','.join(map(str, input_shape))} at batch size {size} is "
            f"{elements:,} values per batch (more than {MAX_SYNTHETIC_ELEMENTS:,}): give the "
            "shape of one example, without the batch dimension"
        )
    return elements


def synthetic_source(
    model: nn.Module, spec: SyntheticSpec, batch_size: int | None, device: torch.device
) -> BatchSource:
    """Random inputs of the given shape (token ids with a vocabulary) with learnable targets.

    Targets follow a fixed hidden rule (nndiag.synthetic) so that fresh batches carry signal:
    next tokens of a Markov chain when the model predicts one class per input token (a language
    model), else a fixed random teacher's argmax (classification) or output (regression). Outputs
    of other shapes get random targets. A private torch.Generator leaves the global RNG alone.
    """
    size = batch_size or DEFAULT_BATCH_SIZE
    shape = (size, *spec.input_shape)
    elements = _batch_elements(spec.input_shape, size)
    generator = torch.Generator().manual_seed(spec.seed)
    vocab = spec.vocab_size

    def draw_inputs() -> Tensor:
        if vocab:
            return torch.randint(0, vocab, shape, generator=generator)
        return torch.randn(shape, generator=generator)

    first = draw_inputs()
    with torch.no_grad():
        probe = user_call("the model on a synthetic batch", call_model, model, first.to(device))
    logits = as_logits(probe)
    classify = (
        spec.classify
        if spec.classify is not None
        else (spec.num_classes is not None or logits.shape[-1] > 1)
    )
    num_classes = spec.num_classes or logits.shape[-1]
    origin = "--batch-size" if batch_size else "default"
    if vocab and classify and tuple(logits.shape[:-1]) == shape and num_classes >= vocab:

        def language_batch() -> Batch:
            stream = synthetic.markov_tokens(
                shape[0], shape[-1] + 1, vocab, generator=generator
            ).reshape(shape[0], -1)
            return stream[:, :-1].reshape(shape), stream[:, 1:].reshape(shape)

        return BatchSource(language_batch, size, origin, "synthetic")

    features = (elements // size) * (EMBED_WIDTH if vocab else 1)
    out = num_classes if classify else (logits.shape[-1] if logits.dim() == 2 else 1)
    rule = synthetic.teacher(features, out, task_seed=spec.seed + 1, balanced=True)
    embed = torch.randn(vocab or 1, EMBED_WIDTH, generator=torch.Generator().manual_seed(spec.seed))
    pending = itertools.chain([first], iter(draw_inputs, None))

    def batch() -> Batch:
        x = next(pending)
        if logits.dim() != 2:
            return x, _random_targets(logits, classify, num_classes, generator)
        with torch.no_grad():
            teacher_out = rule((embed[x] if vocab else x).flatten(1))
        return x, teacher_out.argmax(dim=1) if classify else teacher_out

    return BatchSource(batch, size, origin, "synthetic")


def _random_targets(
    logits: Tensor, classify: bool, num_classes: int, generator: torch.Generator
) -> Tensor:
    if classify:
        return torch.randint(0, num_classes, tuple(logits.shape[:-1]), generator=generator)
    return torch.randn(tuple(logits.shape), generator=generator)
