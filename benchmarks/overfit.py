"""Time per step of the overfit probe against a plain PyTorch loop doing the same steps.

    python benchmarks/overfit.py [--device cpu|cuda] [--steps 100]

Both train a fresh copy of the same model on the same fixed batch with Adam at 1e-3 for the same
number of steps (the probe never passes early and runs no extension or zeroed-input baseline).
Records ms per step for each and the ratio (issue 5's target: within 10%); the probe's figure
includes its copy and set-up.
"""

from __future__ import annotations

import argparse

from common import TOY, contexts, plain_training, probe
from stamp import Table, arguments, record

NEVER_PASS = {
    "pass_loss_fraction": 0.0,
    "pass_accuracy": 1.0,
    "max_extension": 1.0,
    "zeroed_baseline": False,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=100)
    arguments(parser)
    args = parser.parse_args()
    steps = 3 if args.toy else args.steps
    rows = []
    for name, ctx in contexts(args.device, TOY if args.toy else None):
        plain_training(ctx, 5, fresh_batches=False)  # warm-up
        plain = plain_training(ctx, steps, fresh_batches=False) / steps
        result = probe(ctx, "overfit", steps=steps, lr=1e-3, **NEVER_PASS)
        ours = result.seconds / steps
        rows.append((name, ours * 1e3, plain * 1e3, ours / plain))
    columns = ("model", "probe ms/step", "plain ms/step", "ratio")
    record("overfit", [Table(f"Overfit per step, {steps} steps", columns, rows)], args)


if __name__ == "__main__":
    main()
