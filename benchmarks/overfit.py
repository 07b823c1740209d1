"""Time per step of the overfit probe against a plain PyTorch loop doing the same steps.

    python benchmarks/overfit.py [--device cpu|cuda] [--steps 100]

Both train a fresh copy of the same model on the same fixed batch with Adam for the same number
of steps (the probe with its pass check disabled by a fixed step budget it cannot meet early).
Prints ms per step for each and the ratio (issue 5's target: within 10%).
"""

from __future__ import annotations

import argparse

from nndiag.api import run_probe
from nndiag.probes import ProbeName, overfit

from common import contexts, plain_training


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    overfit.PASS_LOSS_FRACTION = 0.0  # never pass early: both sides run every step
    print(f"{'model':12} {'probe ms/step':>14} {'plain ms/step':>14} {'ratio':>6}")
    for name, ctx in contexts(args.device, steps=args.steps, lr=1e-3):
        plain_training(ctx, 5, fresh_batches=False)  # warm-up
        plain = plain_training(ctx, args.steps, fresh_batches=False) / args.steps
        result = run_probe(ProbeName.OVERFIT, ctx)
        probe = result.metrics["ms_per_step"] / 1e3
        print(f"{name:12} {probe * 1e3:14.3f} {plain * 1e3:14.3f} {probe / plain:6.2f}")


if __name__ == "__main__":
    main()
