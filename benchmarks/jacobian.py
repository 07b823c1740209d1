"""Cost of the jacobian probe against one plain forward+backward on the same model and batch.

    python benchmarks/jacobian.py [--device cpu|cuda] [--repeats 3]

Columns: the whole probe; the Hutchinson profile alone (one forward, k backward passes; issue 4's
budget is (k+2)x with k = HUTCHINSON_PROBES); the spectral norm (Lanczos on JᵀJ) with its number
of JᵀJ products. Nothing here is a test.
"""

from __future__ import annotations

import argparse

import torch

from nndiag.api import run_probe
from nndiag.context import Context
from nndiag.probes import ProbeName, jacobian

from common import contexts, plain_fwd_bwd, timed


def parts(ctx: Context, repeats: int) -> dict[str, float]:
    """Seconds of one plain fwd+bwd, the whole probe, the profile and the spectral norm."""
    step = plain_fwd_bwd(ctx)
    step()  # warm-up
    model = jacobian._calibrated_copy(ctx)
    order = jacobian._execution_order(model, jacobian.blocks(model), ctx.inputs)
    surface = jacobian._surface(model, ctx.inputs, order)
    k = jacobian.HUTCHINSON_PROBES

    def profile() -> None:
        jacobian.hutchinson_profile(surface, order, k, torch.Generator().manual_seed(0))

    def spectral() -> None:
        jacobian.spectral_norm(surface, torch.Generator().manual_seed(0))

    run_probe(ProbeName.JACOBIAN, ctx)  # warm-up
    profile()
    result = run_probe(ProbeName.JACOBIAN, ctx)
    return {
        "fwd_bwd": timed(step, repeats, ctx.device),
        "probe": timed(lambda: run_probe(ProbeName.JACOBIAN, ctx), repeats, ctx.device),
        "profile": timed(profile, repeats, ctx.device),
        "spectral": timed(spectral, repeats, ctx.device),
        "products": float(result.metrics.get("spectral_products", 0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    k = jacobian.HUTCHINSON_PROBES
    print(
        f"{'model':11} {'fwd+bwd ms':>10} {'probe x':>8} {'profile x':>10} "
        f"{'(k+2) budget':>12} {'spectral x':>10} {'products':>8}"
    )
    for name, ctx in contexts(args.device):
        p = parts(ctx, args.repeats)
        base = p["fwd_bwd"]
        print(
            f"{name:11} {base * 1e3:10.2f} {p['probe'] / base:8.1f} {p['profile'] / base:10.1f} "
            f"{k + 2:12} {p['spectral'] / base:10.1f} {p['products']:8.0f}"
        )


if __name__ == "__main__":
    main()
