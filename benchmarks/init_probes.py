"""Time each init probe against one plain forward+backward of the same model and batch.

    python benchmarks/init_probes.py [--device cpu|cuda] [--repeats 5]

Prints, per model and probe, the median probe time and its ratio to the median plain step
(issue 8's target for init probes: within 3x). Run on an idle machine; nothing here is a test.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from nndiag.api import run_probe  # noqa: E402
from nndiag.config import CheckOptions  # noqa: E402
from nndiag.context import build_context, build_model, call_model  # noqa: E402
from nndiag.loading import load_spec  # noqa: E402
from nndiag.probes import ProbeName  # noqa: E402

INIT_PROBES = [
    ProbeName.SUMMARY,
    ProbeName.DATA,
    ProbeName.INIT_LOSS,
    ProbeName.GRADIENTS,
    ProbeName.ACTIVATIONS,
]


def contexts(device: str):
    for name in ("mlp.py", "cnn.py", "char_lm.py"):
        spec = load_spec(str(ROOT / "sample_models" / name))
        yield (
            name,
            build_context(
                build_model(spec),
                CheckOptions(device=device, batch_size=64),
                target=name,
                make_batch=spec.make_batch,
            ),
        )
    from models import lm_batch, tiny_gpt2

    batch = lm_batch(batch=16, length=32)
    yield (
        "gpt2-tiny",
        build_context(
            tiny_gpt2(), CheckOptions(device=device), target="gpt2", make_batch=lambda n: batch
        ),
    )


def timed(fn, repeats: int, device: str) -> float:
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    header = f"{'model':12} {'probe':12} {'probe ms':>9} {'fwd+bwd ms':>11} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name, ctx in contexts(args.device):
        model = copy.deepcopy(ctx.model).to(ctx.device)

        def step(model=model, ctx=ctx) -> None:
            model.zero_grad(set_to_none=True)
            ctx.loss(call_model(model, ctx.inputs), ctx.targets).backward()

        step()  # warm-up
        base = timed(step, args.repeats, args.device)
        for probe in INIT_PROBES:
            run_probe(probe, ctx)  # warm-up (imports, allocator)
            seconds = timed(lambda p=probe, c=ctx: run_probe(p, c), args.repeats, args.device)
            print(
                f"{name:12} {probe.value:12} {seconds * 1e3:9.2f} {base * 1e3:11.2f} "
                f"{seconds / base:6.2f}"
            )


if __name__ == "__main__":
    main()
