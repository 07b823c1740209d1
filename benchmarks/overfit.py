"""Time per step of the overfit probe against a plain PyTorch loop doing the same steps.

    python benchmarks/overfit.py [--device cpu|cuda] [--steps 100]

Both train a fresh copy of the same model on the same fixed batch with Adam at 1e-3 for the same
number of steps (the probe never passes early and runs no extension or zeroed-input baseline).
Prints ms per step for each and the ratio (issue 5's target: within 10%); the probe's figure
includes its copy and set-up.
"""

from __future__ import annotations

import argparse

from common import contexts, plain_training, probe

NEVER_PASS = {
    "pass_loss_fraction": 0.0,
    "pass_accuracy": 1.0,
    "max_extension": 1.0,
    "budgeted": True,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    print(f"{'model':12} {'probe ms/step':>14} {'plain ms/step':>14} {'ratio':>6}")
    for name, ctx in contexts(args.device):
        plain_training(ctx, 5, fresh_batches=False)  # warm-up
        plain = plain_training(ctx, args.steps, fresh_batches=False) / args.steps
        result = probe(ctx, "overfit", steps=args.steps, lr=1e-3, **NEVER_PASS)
        ours = result.seconds / args.steps
        print(f"{name:12} {ours * 1e3:14.3f} {plain * 1e3:14.3f} {ours / plain:6.2f}")


if __name__ == "__main__":
    main()
