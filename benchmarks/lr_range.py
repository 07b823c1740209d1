"""Time of nndiag's lr-range probe against torch-lr-finder's `range_test` (pip install
torch-lr-finder, a dev dependency), same steps, model, optimizer and batch stream.

    python benchmarks/lr_range.py [--device cpu|cuda] [--steps 100]

Both run Adam over an exponential schedule from 1e-7 to 1e-2 without stopping on divergence, for
the same number of steps, each step on a fresh batch from the model's make_batch. nndiag's side is
the probe's range loop (`run_range`): the probe adds a short LR sweep around the estimate, which
the peer has no counterpart for. Records seconds for each and the ratio (issue 6/8's target: within
1.15x).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import math
import time
from typing import Any

import torch
from torch import nn

from nndiag.core.contract import call_model
from nndiag.probes.lr_range.running import run_range, schedule

from common import TOY, Context, contexts, criterion, sync
from stamp import Table, arguments, record

START_LR, END_LR = 1e-7, 1e-2


class CallWithContract(nn.Module):
    """torch-lr-finder calls model(inputs); the contract passes dicts as keyword arguments."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Any) -> Any:
        return call_model(self.model, inputs)


class Batches(torch.utils.data.IterableDataset):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def __iter__(self):  # type: ignore[no-untyped-def]
        while True:
            yield self.ctx.next_batch()


def peer_seconds(ctx: Context, steps: int) -> float:
    from torch_lr_finder import LRFinder

    model = CallWithContract(copy.deepcopy(ctx.model).to(ctx.device))
    optimizer = torch.optim.Adam(model.parameters(), lr=START_LR)
    loader = torch.utils.data.DataLoader(Batches(ctx), batch_size=None)
    finder = LRFinder(model, optimizer, criterion(ctx), device=ctx.device)
    sync(ctx.device)
    start = time.perf_counter()
    quiet = io.StringIO()  # its tqdm bar and closing message
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        finder.range_test(loader, end_lr=END_LR, num_iter=steps, diverge_th=math.inf)
    sync(ctx.device)
    return time.perf_counter() - start


def our_seconds(ctx: Context, steps: int) -> float:
    """nndiag's range-test loop (the probe's first range; without its sweep and its analysis)."""
    lrs = [schedule(i, steps, START_LR, END_LR, linear=False) for i in range(steps)]
    sync(ctx.device)
    start = time.perf_counter()
    run_range(ctx, lrs, lambda _i: ctx.source.draw(), math.inf, 0.98, 0, "benchmark")
    sync(ctx.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    arguments(parser)
    args = parser.parse_args()
    steps = 3 if args.toy else args.steps
    rows = []
    for name, ctx in contexts(args.device, TOY if args.toy else None):
        our_seconds(ctx, 5)  # warm-up (imports, allocator)
        ours = our_seconds(ctx, steps)
        peer_seconds(ctx, 5)  # warm-up
        peer = peer_seconds(ctx, steps)
        rows.append((name, ours, peer, ours / peer))
    title = f"LR range test against torch-lr-finder, {steps} steps"
    columns = ("model", "nndiag s", "torch-lr-finder s", "ratio")
    record("lr_range", [Table(title, columns, rows)], args)


if __name__ == "__main__":
    main()
