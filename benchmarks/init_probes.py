"""Time each init probe against one plain forward+backward of the same model and batch.

    python benchmarks/init_probes.py [--device cpu|cuda] [--repeats 5]

Prints, per model and probe, the median probe time and its ratio to the median plain step
(issue 8's target for init probes: within 3x). Run on an idle machine; nothing here is a test.
"""

from __future__ import annotations

import argparse

from nndiag.api import run_probe
from nndiag.probes import ProbeName

from common import contexts, plain_fwd_bwd, timed

INIT_PROBES = [
    ProbeName.SUMMARY,
    ProbeName.DATA,
    ProbeName.INIT_LOSS,
    ProbeName.GRADIENTS,
    ProbeName.ACTIVATIONS,
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    header = f"{'model':12} {'probe':12} {'probe ms':>9} {'fwd+bwd ms':>11} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for name, ctx in contexts(args.device, batch_size=64):
        step = plain_fwd_bwd(ctx)
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
