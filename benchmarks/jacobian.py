"""Cost of the jacobian probe against one plain forward+backward on the same model and batch.

    python benchmarks/jacobian.py [--device cpu|cuda] [--repeats 3]

Columns: the whole probe; the Hutchinson profile alone (one forward, k backward passes; issue 4's
budget is (k+2)x with k = the probe's `hutchinson_probes`); the spectral norm (Lanczos on JᵀJ) with its number
of JᵀJ products, each as a multiple of one plain forward+backward. Nothing here is a test.
"""

from __future__ import annotations

import argparse

import torch

from nndiag.core.surface import calibrated_copy, ordered_blocks, surface
from nndiag.probes import spec
from nndiag.probes.jacobian.estimators import hutchinson_profile, spectral_norm

from common import TOY, Context, contexts, plain_fwd_bwd, probe, timed
from stamp import Table, arguments, record

CONFIG = spec("jacobian").config()


def parts(ctx: Context, repeats: int) -> dict[str, float]:
    """Seconds of one plain fwd+bwd, the whole probe, the profile and the spectral norm."""
    step = plain_fwd_bwd(ctx)
    step()  # warm-up
    model = calibrated_copy(ctx, None, CONFIG.calibration_batches)
    order = ordered_blocks(model, ctx.inputs)
    s = surface(model, ctx.inputs, order)

    def profile() -> None:
        hutchinson_profile(s, order, CONFIG.hutchinson_probes, torch.Generator().manual_seed(0))

    def spectral() -> None:
        spectral_norm(
            s, torch.Generator().manual_seed(0), CONFIG.spectral_iterations,
            CONFIG.spectral_tolerance,
        )  # fmt: skip

    probe(ctx, "jacobian")  # warm-up
    profile()
    result = probe(ctx, "jacobian")
    return {
        "fwd_bwd": timed(step, repeats, ctx.device),
        "probe": timed(lambda: probe(ctx, "jacobian"), repeats, ctx.device),
        "profile": timed(profile, repeats, ctx.device),
        "spectral": timed(spectral, repeats, ctx.device),
        "products": float(result.metrics.get("spectral_products", 0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    arguments(parser)
    args = parser.parse_args()
    k = CONFIG.hutchinson_probes
    rows = []
    for name, ctx in contexts(args.device, TOY if args.toy else None):
        p = parts(ctx, 1 if args.toy else args.repeats)
        base = p["fwd_bwd"]
        rows.append((name, base * 1e3, p["probe"] / base, p["profile"] / base, k + 2,
                     p["spectral"] / base, int(p["products"])))  # fmt: skip
    columns = ("model", "fwd+bwd ms", "probe x", "profile x", "(k+2) budget", "spectral x",
               "products")  # fmt: skip
    record("jacobian", [Table("The jacobian probe, part by part", columns, rows)], args)


if __name__ == "__main__":
    main()
