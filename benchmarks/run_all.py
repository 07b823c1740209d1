"""Every probe on every benchmark model: time and peak memory against plain PyTorch, in one run.

    python benchmarks/run_all.py [--device cpu|cuda] [--repeats 3] [--steps 50] [--batch-size N]
                                 [--models NAME ...]

Per model and probe it records the probe's time as a multiple of the plain-PyTorch equivalent
measured in the same run, and its peak memory as a multiple of one plain training step's:

| probe | plain equivalent | target (issue 8) |
| --- | --- | --- |
| summary, data, init-loss, gradients, activations | one forward+backward on the fixed batch | 3x |
| jacobian | one forward+backward | its Hutchinson profile (k+2)x, k = HUTCHINSON_PROBES |
| overfit | the same number of Adam steps on the fixed batch (per step) | 1.15x |
| lr-range | the same number of Adam steps on fresh batches | 1.15x |

Peak memory is the peak above the level before the measurement, after one warm-up run: on CPU the
resident set size (Linux: VmHWM after resetting it through /proc/self/clear_refs) in a fresh worker
process per measurement, with large blocks allocated through mmap so that RSS follows the live
tensors; on CUDA `max_memory_allocated`. Target: 2.5x one training
step. Then the wall time of the whole `nndiag check` on the sample files, start-up included, and
of `nndiag --help`. `--batch-size` replaces each model's own batch size (a larger batch shows
how the probes' fixed per-call overhead amortises). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from common import ROOT, SAMPLES, TOY, Context, contexts, plain_training, probe, timed
from jacobian import CONFIG as JACOBIAN
from jacobian import parts as jacobian_parts
from overfit import NEVER_PASS
from stamp import Table, arguments, record

INIT_PROBES = ("summary", "data", "structure", "init-loss", "gradients", "activations")
INIT_TARGET, TRAINING_TARGET, MEMORY_TARGET = 3.0, 1.15, 2.5
MB = 2**20


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@contextmanager
def peak_memory(device: torch.device) -> Iterator[Callable[[], float]]:
    """Yields a function giving the peak bytes used above the level at entry."""
    result = {"peak": math.nan}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        yield lambda: result["peak"]
        torch.cuda.synchronize()
        result["peak"] = torch.cuda.max_memory_allocated(device) - start
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        start_kb = _status_kb("VmRSS")
    except OSError:  # not Linux: no per-measurement peak
        yield lambda: result["peak"]
        return
    yield lambda: result["peak"]
    result["peak"] = (_status_kb("VmHWM") - start_kb) * 1024.0


# Training probes without early exits, sweeps or baselines, so that both sides run every step.
SETTINGS: dict[str, dict[str, Any]] = {
    "overfit": {**NEVER_PASS, "lr": 1e-3},
    "lr-range": {"diverge_factor": math.inf, "end_lr": 1e-2, "sweep_steps": 0},
}
PLAIN_STEP = "plain-step"


def run_once(ctx: Context, what: str, steps: int) -> Any:
    """One plain training step, or one probe run with its benchmark settings."""
    if what == PLAIN_STEP:
        return plain_training(ctx, 1, fresh_batches=False)
    length = {"overfit": {"steps": steps}, "lr-range": {"num_steps": steps}}.get(what, {})
    return probe(ctx, what, **SETTINGS.get(what, {}), **length)


def model_options(args: argparse.Namespace) -> dict[str, Any]:
    """CheckOptions for the benchmark contexts, the same in the main process and its workers."""
    return {"batch_size": args.batch_size} if args.batch_size else {}


def worker_args(args: argparse.Namespace) -> list[str]:
    extra = ["--batch-size", str(args.batch_size)] if args.batch_size else []
    return ["--device", args.device, "--steps", str(args.steps), *extra]


def shrink(args: argparse.Namespace) -> None:
    """A --toy run: one model, one init probe, one repeat, two steps (every path, in seconds)."""
    args.init_probes = INIT_PROBES
    if args.toy:
        args.models, args.repeats, args.steps = list(TOY), 1, 2
        args.init_probes = INIT_PROBES[:1]


def peak_bytes(model: str, what: str, args: argparse.Namespace) -> float:
    """Peak memory of `what`: in this process on CUDA, in a fresh worker process on CPU (where
    the allocator keeps freed memory, so an in-process RSS peak says little)."""
    if args.device.startswith("cuda"):
        _, ctx = next(contexts(args.device, names=(model,), **model_options(args)))
        run_once(ctx, what, args.steps)  # warm-up
        with peak_memory(ctx.device) as peak:
            run_once(ctx, what, args.steps)
        return peak()
    cmd = [sys.executable, __file__, "--memory-worker", model, what, *worker_args(args)]
    # Large blocks through mmap, so that freeing returns them to the OS and RSS follows the live
    # tensors instead of glibc's free lists.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else math.nan


def memory_worker(model: str, what: str, args: argparse.Namespace) -> None:
    _, ctx = next(contexts(args.device, names=(model,), **model_options(args)))
    run_once(ctx, what, args.steps)  # warm-up: imports, kernel caches, thread pools
    with peak_memory(ctx.device) as peak:
        run_once(ctx, what, args.steps)
    print(peak())


def probe_rows(name: str, ctx: Context, args: argparse.Namespace) -> list[tuple]:
    """(model, probe, seconds, plain seconds, target or nan, peak bytes, plain step bytes)."""
    device, repeats, steps = str(ctx.device), args.repeats, args.steps
    step_memory = peak_bytes(name, PLAIN_STEP, args)
    rows = []
    parts = jacobian_parts(ctx, repeats)
    base = parts["fwd_bwd"]
    for what in args.init_probes:
        probe(ctx, what)  # warm-up (imports, allocator)
        seconds = timed(lambda p=what: probe(ctx, p), repeats, device)
        memory = peak_bytes(name, what, args)
        rows.append((name, what, seconds, base, INIT_TARGET, memory, step_memory))
    memory = peak_bytes(name, "jacobian", args)
    k = JACOBIAN.hutchinson_probes
    rows.append((name, "jacobian", parts["probe"], base, math.nan, memory, step_memory))
    rows.append((name, "  profile", parts["profile"], base, k + 2.0, math.nan, step_memory))
    plain_training(ctx, 3, fresh_batches=False)  # warm-up
    plain_step = plain_training(ctx, steps, fresh_batches=False) / steps
    per_step = run_once(ctx, "overfit", steps).seconds / steps
    memory = peak_bytes(name, "overfit", args)
    rows.append((name, "overfit/step", per_step, plain_step, TRAINING_TARGET, memory, step_memory))
    plain_range = plain_training(ctx, steps, fresh_batches=True)
    seconds = run_once(ctx, "lr-range", steps).seconds
    memory = peak_bytes(name, "lr-range", args)
    rows.append((name, "lr-range", seconds, plain_range, TRAINING_TARGET, memory, step_memory))
    return rows


def wall(args: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(args, check=False, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--models", nargs="+", default=None, help="default: every model")
    parser.add_argument("--memory-worker", nargs=2, metavar=("MODEL", "WHAT"))
    arguments(parser)
    args = parser.parse_args()
    shrink(args)
    if args.memory_worker:
        memory_worker(*args.memory_worker, args)
        return
    rows, misses = [], []
    models = tuple(args.models) if args.models else None
    for name, ctx in contexts(args.device, models, **model_options(args)):
        for model, what, seconds, base, target, memory, step_memory in probe_rows(name, ctx, args):
            ratio = seconds / base
            mem_ratio = memory / step_memory if step_memory > MB else math.nan
            late, heavy = ratio > target, mem_ratio > MEMORY_TARGET
            if late or heavy:
                misses.append(f"{model} {what.strip()}" + (f" {ratio:.2f}x time" if late else "")
                              + (f" {mem_ratio:.2f}x memory" if heavy else ""))  # fmt: skip
            rows.append((model, what.strip(), seconds * 1e3, base * 1e3, ratio, target,
                         memory / MB, step_memory / MB, mem_ratio))  # fmt: skip
    columns = ("model", "probe", "probe ms", "plain ms", "ratio", "target", "peak MB", "step MB",
               "mem x")  # fmt: skip
    batch = f"batch size {args.batch_size}" if args.batch_size else "each model's batch size"
    tables = [Table(f"Every probe against plain PyTorch ({batch})", columns, rows),
              Table("Whole commands, start-up included", ("command", "seconds"), commands(args))]  # fmt: skip
    notes = (
        "Over a target (time, or memory 2.5x): " + ("; ".join(misses) or "none") + ".",
        "The jacobian has no single target; its Hutchinson profile (the row below it) has (k+2)x. "
        "mem x is '-' where one plain training step raised the peak by less than 1 MB.",
    )
    record("run_all", tables, args, notes)


def commands(args: argparse.Namespace) -> list[tuple[str, float]]:
    nndiag = [sys.executable, "-m", "nndiag.cli"]
    rows = [("nndiag --help", wall([*nndiag, "--help"], 5))]
    for sample in () if args.toy else SAMPLES:
        target = str(ROOT / "sample_models" / sample)
        cmd = [*nndiag, "check", target, "--device", args.device, "--quiet", "--fail-on", "never"]
        rows.append((f"nndiag check {sample}", wall(cmd, 1)))
    return rows


if __name__ == "__main__":
    main()
