"""Time of nndiag's lr-range probe against torch-lr-finder's `range_test` (pip install
torch-lr-finder, or `pip install -e ".[bench]"`), same steps, model, optimizer and batch stream.

    python benchmarks/lr_range.py [--device cpu|cuda] [--steps 100]

Both run Adam over an exponential schedule from 1e-7 to 1e-2 (low enough that neither stops
early on divergence) for the same number of steps, each step on a fresh batch from the model's
make_batch. Prints seconds for each and the ratio (issue 6/8's target: within 1.15x).
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

from nndiag.api import run_probe
from nndiag.context import Context, call_model
from nndiag.probes import ProbeName, lr_range

from common import contexts, sync

END_LR = 1e-2


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
    optimizer = torch.optim.Adam(model.parameters(), lr=lr_range.START_LR)
    loader = torch.utils.data.DataLoader(Batches(ctx), batch_size=None)
    finder = LRFinder(model, optimizer, ctx.loss, device=ctx.device)
    sync(ctx.device)
    start = time.perf_counter()
    quiet = io.StringIO()  # its tqdm bar and closing message
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        finder.range_test(loader, end_lr=END_LR, num_iter=steps, diverge_th=math.inf)
    sync(ctx.device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    lr_range.DIVERGE_FACTOR = math.inf  # both sides run every step
    print(f"{'model':12} {'nndiag s':>9} {'torch-lr-finder s':>18} {'ratio':>6}")
    for name, ctx in contexts(args.device, range_steps=args.steps, lr_end=END_LR):
        run_probe(ProbeName.LR_RANGE, ctx)  # warm-up (imports, allocator)
        ours = run_probe(ProbeName.LR_RANGE, ctx).seconds
        peer_seconds(ctx, 5)  # warm-up
        peer = peer_seconds(ctx, args.steps)
        print(f"{name:12} {ours:9.3f} {peer:18.3f} {ours / peer:6.2f}")


if __name__ == "__main__":
    main()
