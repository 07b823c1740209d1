"""Checks under torchrun: FSDP2 (`fully_shard`) and DDP, on CPU (gloo) or GPU (NCCL).

    torchrun --nproc_per_node 2 -m nndiag check model.py --distributed fsdp --json report.json

Every rank builds the model and feeds its own slice of each batch (the batch is drawn the same
on every rank, from the same seed). Probe copies are sharded (FSDP2: `fully_shard` on each block
of the largest stack, then the root, or the model file's `shard_model(model, mesh)`) or
replicated (`--distributed ddp`: data-parallel semantics without the DistributedDataParallel
wrapper: after each backward the gradients are all-reduced and averaged across ranks, which is
what DDP computes; DDP's bucketing, its unused-parameter checks and its hooks are not
exercised). Per-layer statistics are sums, reduced with one collective per probe;
rank 0 alone renders and exports, and every rank exits with the worst rank's code. A collective
that waits longer than the timeout ends the run with one line, never a silent hang.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, NoReturn

import torch
import torch.distributed as dist
from torch import Tensor, nn

from nndiag.config import Distributed
from nndiag.errors import OptionError

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
STACKS = (nn.ModuleList, nn.Sequential)


@dataclass(frozen=True)
class Session:
    strategy: Distributed
    rank: int
    world: int
    device: torch.device
    mesh: Any  # a DeviceMesh under FSDP2

    @property
    def leader(self) -> bool:
        return self.rank == 0


# A rank that waits this long for the others ends the run (NNDIAG_COLLECTIVE_TIMEOUT: seconds).
COLLECTIVE_TIMEOUT_S = 300.0
EXIT_STOPPED = 2  # the check could not run to its end (running.EXIT_USAGE)


def collective_timeout() -> timedelta:
    return timedelta(
        seconds=float(os.environ.get("NNDIAG_COLLECTIVE_TIMEOUT", COLLECTIVE_TIMEOUT_S))
    )


def _stop_on_sigterm(rank: int, world: int) -> Callable[[int, Any], None]:
    """torchrun ends the ranks still running with SIGTERM once one fails (a collective timed
    out there): this rank says so in one line and leaves with the failed run's code, rather than
    die of the signal mid-probe. Returns the handler installed."""

    def stop(_signum: int, _frame: Any) -> None:
        sys.stderr.write(
            f"nndiag: error: rank {rank} of {world} stopped: torchrun sent SIGTERM (another "
            "rank failed, or the run was cancelled)\n"
        )
        sys.stderr.flush()
        os._exit(EXIT_STOPPED)

    signal.signal(signal.SIGTERM, stop)
    return stop


@contextmanager
def session(strategy: Distributed, device: str) -> Iterator[Session]:
    """The process group for the whole check: gloo on a CPU, NCCL on CUDA. A caller that already
    holds one (the CLI, around the check and its exports; a user's torchrun script) keeps it."""
    missing = [name for name in TORCHRUN_ENV if name not in os.environ]
    if missing:
        raise OptionError(
            f"--distributed {strategy.value} runs under torchrun (missing {', '.join(missing)}): "
            f"torchrun --nproc_per_node N -m nndiag check MODEL --distributed {strategy.value}"
        )
    rank, world, local = (int(os.environ[k]) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    target = torch.device("cuda", local) if cuda else torch.device("cpu")
    owner = not dist.is_initialized()
    if owner:
        if cuda:
            torch.cuda.set_device(target)
        backend = "nccl" if cuda else "gloo"
        dist.init_process_group(backend, timeout=collective_timeout())
    previous = signal.getsignal(signal.SIGTERM)
    stop = _stop_on_sigterm(rank, world)
    try:
        mesh = None
        if strategy is Distributed.FSDP:
            from torch.distributed.device_mesh import init_device_mesh

            mesh = init_device_mesh(target.type, (world,))
        yield Session(strategy, rank, world, target, mesh)
    finally:
        # The caller's handler back (an API user's script), unless the exit path already chose
        # one (agreed_exit ignores SIGTERM for the teardown race).
        if signal.getsignal(signal.SIGTERM) is stop:
            signal.signal(signal.SIGTERM, previous)
        if owner:
            gc.collect()  # the check's sharded copies and meshes go while the group is alive
            dist.destroy_process_group()


class DistReducer:
    """Reductions across the ranks of a session (the Reducer of nndiag.core.reduce)."""

    def __init__(self, s: Session) -> None:
        self.session = s
        self.rank, self.world = s.rank, s.world

    def _reduce(self, values: Tensor, op: Any) -> Tensor:
        # gloo reduces CPU tensors; NCCL device tensors
        tensor = values.detach().clone().to(self.session.device)
        dist.all_reduce(tensor, op=op)
        return tensor.to(values.device)

    def sum(self, values: Tensor) -> Tensor:
        return self._reduce(values, dist.ReduceOp.SUM)

    def max(self, values: Tensor) -> Tensor:
        return self._reduce(values, dist.ReduceOp.MAX)

    def min(self, values: Tensor) -> Tensor:
        return self._reduce(values, dist.ReduceOp.MIN)

    def shard_sum(self, values: Tensor) -> Tensor:
        return self.sum(values) if self.session.strategy is Distributed.FSDP else values

    def average_gradients(self, model: nn.Module) -> None:
        """What DDP's backward does, in one collective: every gradient averaged over the ranks.
        Under FSDP2 the backward already reduce-scattered them."""
        if self.session.strategy is not Distributed.DDP:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        flat = self.sum(torch.cat([g.reshape(-1) for g in grads])) / self.world
        for g in grads:
            g.copy_(flat[: g.numel()].reshape(g.shape))
            flat = flat[g.numel() :]


def largest_stack(model: nn.Module) -> list[nn.Module]:
    """The blocks of the largest ModuleList/Sequential of two or more (by parameters): the
    transformer layers, the ResNet stages' blocks."""
    stacks = [m for m in model.modules() if isinstance(m, STACKS) and len(m) >= 2]
    if not stacks:
        return []
    size = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return [child for child in max(stacks, key=size) if size(child) > 0]


def sharder(
    s: Session, shard_model: Callable[[nn.Module, Any], nn.Module] | None
) -> Callable[[nn.Module], nn.Module]:
    """How every probe copy is prepared: sharded with FSDP2 (the file's shard_model, or each
    block of the largest stack then the root), or left replicated for DDP."""

    def prepare(model: nn.Module) -> nn.Module:
        if s.strategy is not Distributed.FSDP:
            return model
        if shard_model is not None:
            return shard_model(model, s.mesh)
        from torch.distributed.fsdp import fully_shard

        for block in largest_stack(model):
            fully_shard(block, mesh=s.mesh)
        fully_shard(model, mesh=s.mesh)
        return model

    return prepare


def local(t: Tensor) -> Tensor:
    """The part of a (possibly sharded) tensor this rank holds."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


def agreed_exit(code: int) -> int:
    """The worst exit code over the ranks (an error on any rank fails all).

    The rank's work is done when it gets here, so it stops listening to SIGTERM first: when a
    sibling leaves with exit code 1, torchrun sends SIGTERM to the ranks still running, and a
    rank that is only tearing down would otherwise die of the signal. No rank can leave the
    all-reduce below before every rank has entered it, that is, before every rank ignores it."""
    if not dist.is_initialized():
        return code
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    worst = torch.tensor([code], dtype=torch.int64)
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return int(worst[0])


def exit_rank(code: int) -> NoReturn:
    """End a torchrun worker once its process group is destroyed: collect the models, FSDP
    states and DTensors that still reference the group, flush the report, and leave without
    interpreter finalization. Finalization destroys C++ objects whose threads (gloo's workers,
    the store client) may still be joinable, and std::terminate then aborts a rank whose
    report is complete ("terminate called without an active exception", SIGABRT)."""
    gc.collect()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)
