"""Is the suggested LR any good? Train at each tool's pick and at a grid; compare the losses.

    python benchmarks/lr_quality.py [--tasks NAME ...] [--steps 200]

For each learnable task of lr_tasks.py (optimizers SGD with momentum or Nesterov, Adam, AdamW with
weight decay, two parameter groups; batch sizes 16 to 256; classification, regression, language
models, a CNN with BatchNorm, recurrent models), in one run:

- the grid: a fresh copy (the same initial weights every time) trains `--steps` steps on the
  same batches in the same order at each LR of a half-decade grid from 1e-5 to 1;
- the picks: the same training at the LR each tool suggests: nndiag's lr-range probe (at the
  task's batch size and optimizer, its own batches), pytorch-lr-finder's steepest-slope rule on
  its own range test (`torch_lr_finder.LRFinder`, same optimizer), and fastai's valley rule on a
  fastai-style range test (1e-7 to 10, 100 steps, EMA β 0.98, stop at 4x the best), re-implemented
  from fastai's source (`fastai.callback.schedule.valley`: fastai needs torchvision, which would
  pull a CUDA build of torch here);
- the seeds: `--seeds` times, each with its own data order for the grid and its own batches and
  seed for every tool's range test (one order is a lottery near the edge of stability);
- the score: the mean loss of the last 20 steps; the ratio: a pick's score over the best grid
  LR's on the same data order (1.0 is as good as the best grid point; below 1, better); a task's
  ratio is the geometric mean over its seeds.

Records the table, each tool's geometric mean and worst ratio, and nndiag's calibration over every
(task, seed): how often a "high" suggestion came within 1.25x of the grid's best and a "medium"
within 1.5x.
Nothing here is a test (about 10 minutes on a 2-core CPU for the easy set).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

import nndiag
from nndiag.core.stats import geometric_mean
from nndiag.probes.lr_range.rules import smooth, valley

from lr_tasks import HARD, TASKS, Task
from stamp import Table, arguments, record

GRID = [10 ** (-5 + k / 2) for k in range(11)]  # 1e-5 ... 1, half a decade apart
TAIL = 20
VERBOSE = False


def scaled(task: Task, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The task's optimizer with every parameter group scaled so that the first is at `lr`."""
    optimizer = task.optimizer(model.parameters())
    factor = lr / optimizer.param_groups[0]["lr"]
    for group in optimizer.param_groups:
        group["lr"] *= factor
    return optimizer


def fresh(task: Task) -> nn.Module:
    torch.manual_seed(0)  # the same initial weights for every run of a task
    return task.build()


def batches(task: Task, count: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [task.batch(g) for _ in range(count)]


def score(task: Task, lr: float | None, data: list) -> float:
    if lr is None or not math.isfinite(lr) or lr <= 0:
        return math.inf
    model = fresh(task).train()
    optimizer = scaled(task, model, lr)
    losses = []
    for x, y in data:
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss(model(x), y)
        if not torch.isfinite(loss):
            return math.inf
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return statistics.fmean(losses[-TAIL:])


def nndiag_pick(task: Task, seed: int) -> tuple[float | None, str]:
    g = torch.Generator().manual_seed(1000 + seed)

    def make_batch(batch_size: int = task.batch_size) -> tuple[torch.Tensor, torch.Tensor]:
        return task.batch(g)

    report = nndiag.check(
        fresh(task), make_batch=make_batch, loss_fn=task.loss, make_optimizer=task.optimizer,
        probes=["lr-range"], device="cpu", seed=seed,
    )  # fmt: skip
    result = report.result("lr-range")
    if result.status.value != "ok":
        print(f"  nndiag failed on {task.name}: {result.error}", file=sys.stderr)
        return None, "none"
    if VERBOSE:
        m = result.metrics
        sweep = next((t.rows for t in result.tables if t.name == "sweep"), ())
        trials = ", ".join(f"{r['lr']:.1e}: {r['score']:.4f}" for r in sweep)
        print(
            f"    estimate {m['estimate']} ({m['estimate_source']}), {m['sweep_placement']}; {trials}"
        )
    return result.metrics["suggested_lr"], result.metrics["confidence"]


def steepest_pick(task: Task, seed: int) -> float | None:
    """pytorch-lr-finder: its range test and its steepest-gradient rule (skip 10 and 5)."""
    from torch_lr_finder import LRFinder
    from torch_lr_finder.lr_finder import TrainDataLoaderIter

    model = fresh(task)
    optimizer = scaled(task, model, 1e-7)
    data = TrainDataLoaderIter(batches(task, 100, seed=2000 + seed))  # a list of batches, cycled
    finder = LRFinder(model, optimizer, task.loss, device="cpu")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        finder.range_test(data, end_lr=10, num_iter=100)
    lrs, losses = finder.history["lr"][10:-5], finder.history["loss"][10:-5]
    if len(losses) < 3:
        return None
    gradients = [b - a for a, b in itertools.pairwise(losses)]
    return lrs[min(range(len(gradients)), key=gradients.__getitem__)]


def valley_pick(task: Task, seed: int) -> float | None:
    """fastai's lr_find: 1e-7 to 10 over 100 steps, EMA β 0.98, stop at 4x the best; valley."""
    model = fresh(task).train()
    optimizer = scaled(task, model, 1e-7)
    factors = [g["lr"] / optimizer.param_groups[0]["lr"] for g in optimizer.param_groups]
    lrs, raw = [], []
    best = math.inf
    for i, (x, y) in enumerate(batches(task, 100, seed=3000 + seed)):
        lr = 1e-7 * (10 / 1e-7) ** (i / 99)
        for group, factor in zip(optimizer.param_groups, factors, strict=True):
            group["lr"] = lr * factor
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss(model(x), y)
        if not torch.isfinite(loss):
            break
        loss.backward()
        optimizer.step()
        lrs.append(lr)
        raw.append(float(loss.detach()))
        smoothed = smooth(raw, 0.98)[-1]
        best = min(best, smoothed)
        if smoothed > 4 * best:
            break
    return valley(lrs, smooth(raw, 0.98))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=[])
    parser.add_argument("--set", choices=("all", "easy", "hard"), default="all",
                        help="hard: the families range tests miss (recurrent near its stability "
                        "edge, noisy targets, AdamW with weight decay, SGD+BN, batch 512, deep "
                        "residual)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument(
        "--seeds", type=int, default=3,
        help="data orders and range-test seeds; a task's ratio is their geometric mean",
    )  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="print nndiag's estimate and sweep")
    arguments(parser)
    args = parser.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    torch.set_num_threads(2)
    chosen = {"all": TASKS + HARD, "easy": TASKS, "hard": HARD}[args.set]
    chosen = [t for t in chosen if not args.tasks or t.name in args.tasks][
        : 1 if args.toy else None
    ]
    steps, seeds = (25, 1) if args.toy else (args.steps, args.seeds)
    rows, ratios, calibration = [], defaultdict(list), defaultdict(list)
    for task in chosen:
        row, labelled = task_row(task, steps, seeds)
        rows.append(row)
        for tool, ratio in zip(TOOLS, row[4::2], strict=True):
            ratios[tool].append(ratio)
        for label, ratio in labelled:
            calibration[label].append(ratio)
    columns = ("task", "grid lr", "loss", *(f"{t} {c}" for t in TOOLS for c in ("lr", "ratio")),
               "confidence")  # fmt: skip
    summary = [(tool, geometric_mean([min(r, 1e3) for r in ratios[tool]]),
                max(min(r, 1e3) for r in ratios[tool])) for tool in TOOLS]  # fmt: skip
    calibrated = [
        (label, len(values), *(sum(v <= limit for v in values) / len(values) for limit in LIMITS))
        for label, values in sorted(calibration.items())
    ]
    title = (
        f"Loss at each pick over the grid's best, {steps} steps, {seeds} seed(s) "
        "(the geometric mean of each lr and ratio)"
    )
    record("lr_quality", [
        Table(title, columns, rows),
        Table("Each tool over all tasks", ("tool", "geometric mean", "worst"), summary),
        Table("nndiag's confidence against the ratio it reached, over every task and seed",
              ("confidence", "runs", *(f"share within {x}x" for x in LIMITS)), calibrated),
    ], args)  # fmt: skip


TOOLS = ("nndiag", "steepest", "valley")
LIMITS = (1.25, 1.5)


def task_row(
    task: Task, steps: int, seeds: int
) -> tuple[tuple[object, ...], list[tuple[str, float]]]:
    """(task, best grid lr, its loss, then each tool's pick and ratio, nndiag's confidences) and
    each seed's (confidence, ratio) of nndiag. Per seed s: the grid and every pick train on data
    order s, and each tool's range test runs on its own batches for s."""
    tools: dict[str, list[tuple[float, float]]] = defaultdict(list)  # (lr, ratio) per seed
    labelled, best_lrs, best_losses = [], [], []
    for seed in range(seeds):
        data = batches(task, steps, seed=seed)
        grid = {lr: score(task, lr, data) for lr in GRID}
        best = min(grid.values())
        best_lrs.append(min(grid, key=grid.__getitem__))
        best_losses.append(best)
        if VERBOSE:
            print("    grid " + ", ".join(f"{lr:.0e}: {v:.4f}" for lr, v in grid.items()))
        suggested, label = nndiag_pick(task, seed)
        picks = {"nndiag": suggested, "steepest": steepest_pick(task, seed),
                 "valley": valley_pick(task, seed)}  # fmt: skip
        for tool, lr in picks.items():
            tools[tool].append(
                (math.nan if lr is None else lr, min(score(task, lr, data) / best, 1e3))
            )
        labelled.append((label, tools["nndiag"][-1][1]))
    cells: list[object] = []
    for tool in TOOLS:
        lrs = [lr for lr, _ in tools[tool] if math.isfinite(lr)]
        cells += [geometric_mean(lrs) if lrs else math.nan,
                  geometric_mean([r for _, r in tools[tool]])]  # fmt: skip
    print(f"{task.name}: " + " ".join(f"{c:.3g}" for c in cells), flush=True)
    confidences = ", ".join(label for label, _ in labelled)
    row = (task.name, geometric_mean(best_lrs), geometric_mean(best_losses), *cells, confidences)
    return row, labelled


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
