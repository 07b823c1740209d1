"""The model-call contract (docs/contract.md): how inputs go in, which output is the logits, the
default loss, and how user callables are invoked so that their failures become UsageErrors."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nndiag.core.tensors import describe
from nndiag.errors import ContractError, from_user_code

INTEGER_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8)


def call_model(model: nn.Module, inputs: Any) -> Any:
    """A dict is passed as keyword arguments, a tuple/list positionally, the Arguments a
    training step called the model with as they were, anything else as is."""
    from nndiag.core.tensors import Arguments

    if isinstance(inputs, Arguments):
        return model(*inputs.args, **inputs.kwargs)
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def user_call(description: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Call user code; any exception (SystemExit included, Ctrl-C excepted) becomes a UsageError
    that names the user's file and line."""
    try:
        return fn(*args)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise from_user_code(description, exc) from exc


def as_logits(outputs: Any) -> Tensor:
    """Tensor; tuple/list -> first element; dict or Hugging Face ModelOutput -> 'logits', or its
    only tensor. A 0-d tensor has no examples: it is rejected with the reason."""
    if isinstance(outputs, Tensor):
        if outputs.dim() == 0:
            raise ContractError(
                "the model returned a 0-d tensor (a single number): return one output per "
                "example, e.g. logits of shape (batch, classes); compute the loss in loss_fn"
            )
        return outputs
    if isinstance(outputs, dict):  # ModelOutput subclasses OrderedDict
        if "logits" in outputs:
            return as_logits(outputs["logits"])
        tensors = {k: v for k, v in outputs.items() if isinstance(v, Tensor)}
        if len(tensors) == 1:
            return as_logits(next(iter(tensors.values())))
        raise ContractError(
            f"the model returned a dict without 'logits' (keys: {', '.join(map(str, outputs))}):"
            " name the output 'logits', or return it first in a tuple"
        )
    if isinstance(outputs, (tuple, list)) and outputs:
        return as_logits(outputs[0])
    raise ContractError(
        f"unsupported model output {describe(outputs)}: return a Tensor, a tuple/list whose first "
        "element is the logits, or a dict / ModelOutput with 'logits'"
    )


def primary_output(outputs: Any) -> Tensor | None:
    """The model's main output, for probes that compare or differentiate it: its logits where it
    has them (as_logits), else its first floating-point tensor (an embedding, a dict without
    'logits' that a user loss reads); None when it holds no float tensor."""
    from nndiag.core.tensors import first_float

    try:
        return as_logits(outputs)
    except ContractError:
        return first_float(outputs)


def output_tensor(outputs: Any) -> Tensor:
    """primary_output, for the probes that cannot work without one."""
    found = primary_output(outputs)
    if found is None:
        raise ContractError(
            f"the model's output {describe(outputs)} holds no floating-point tensor to measure"
        )
    return found


def is_classification(targets: Tensor) -> bool:
    return not targets.is_floating_point() and targets.dtype != torch.bool


def default_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy for integer targets (any leading dims), MSE for float targets."""
    if targets.dtype in INTEGER_DTYPES:
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1).long()
        )
    return F.mse_loss(logits.float(), targets.float())


def eval_mode_backward(model: nn.Module) -> AbstractContextManager[Any]:
    """Kernels that can differentiate `model` in eval mode: cuDNN's RNN kernels refuse a backward
    outside training mode (and have no double backward), the native ones have both. Only models
    with recurrent layers give up cuDNN, and only inside the block (convolutions keep it)."""
    if any(isinstance(m, nn.RNNBase) for m in model.modules()):
        return torch.backends.cudnn.flags(enabled=False)
    return nullcontext()


def out_of_memory_errors() -> tuple[type[BaseException], ...]:
    # torch.OutOfMemoryError exists from torch 2.5; torch.cuda's alias is older.
    found = {
        getattr(torch, "OutOfMemoryError", None),
        getattr(torch.cuda, "OutOfMemoryError", None),
    }
    return tuple(t for t in found if isinstance(t, type))
