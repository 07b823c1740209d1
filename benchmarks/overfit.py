"""Time per step of the overfit probe against a plain PyTorch loop doing the same steps.

    python benchmarks/overfit.py [--device cpu|cuda] [--steps 100]

Both train a fresh copy of the same model on the same fixed batch with Adam for the same number
of steps (the probe with its pass check disabled by a fixed step budget it cannot meet early).
Prints ms per step for each and the ratio (issue 5's target: within 10%).
"""

from __future__ import annotations

import argparse
import copy
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
from nndiag.probes import ProbeName, overfit  # noqa: E402


def contexts(device: str, steps: int):
    options = CheckOptions(device=device, steps=steps, lr=1e-3)
    for name in ("mlp.py", "cnn.py", "char_lm.py"):
        spec = load_spec(str(ROOT / "sample_models" / name))
        yield (
            name,
            build_context(build_model(spec), options, target=name, make_batch=spec.make_batch),
        )
    from models import lm_batch, tiny_gpt2

    batch = lm_batch(batch=16, length=32)
    yield (
        "gpt2-tiny",
        build_context(tiny_gpt2(), options, target="gpt2", make_batch=lambda n: batch),
    )


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def plain_loop(ctx, steps: int) -> float:
    model = copy.deepcopy(ctx.model).to(ctx.device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sync(str(ctx.device))
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = ctx.loss(call_model(model, ctx.inputs), ctx.targets)
        loss.item()  # the probe reads every loss too (early stopping)
        loss.backward()
        optimizer.step()
    sync(str(ctx.device))
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    overfit.PASS_LOSS_FRACTION = 0.0  # never pass early: both sides run every step
    print(f"{'model':12} {'probe ms/step':>14} {'plain ms/step':>14} {'ratio':>6}")
    for name, ctx in contexts(args.device, args.steps):
        plain_loop(ctx, 5)  # warm-up
        plain = plain_loop(ctx, args.steps)
        result = run_probe(ProbeName.OVERFIT, ctx)
        probe = result.metrics["ms_per_step"] / 1e3
        print(f"{name:12} {probe * 1e3:14.3f} {plain * 1e3:14.3f} {probe / plain:6.2f}")


if __name__ == "__main__":
    main()
