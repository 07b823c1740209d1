"""How good is the suggested LR? Train at each rule's pick and at a grid, compare the loss reached.

    python benchmarks/lr_quality.py [--device cpu|cuda] [--budget 150] [--seeds 2]

For each benchmark model: one nndiag range test (default settings) gives a raw loss curve. On that
same curve, three picks are computed:

- nndiag: the probe's recommendation (rules on the zero-lag trend, see docs/probes/lr-range.md);
- steepest: pytorch-lr-finder's rule on its own EMA (smooth_f 0.05, i.e. beta 0.95, not
  bias-corrected), skipping 10 points at the start and 5 at the end;
- valley: fastai's valley on fastai's EMA (beta 0.98, bias-corrected).

Then a fresh copy trains with Adam for `--budget` steps on fresh batches at each pick and at each
LR of a grid; the score is the mean loss of the last 20 steps, averaged over `--seeds` runs (lower
is better; inf when training diverged). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import math
import statistics

import torch

from nndiag.api import run_probe
from nndiag.context import Context
from nndiag.probes import ProbeName
from nndiag.probes.lr_range import smooth, steepest, valley
from nndiag.training import Trainer

from common import contexts

GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
TAIL = 20  # steps averaged for the score
PEER_SMOOTH_F = 0.05  # pytorch-lr-finder's default


def peer_ema(losses: list[float]) -> list[float]:
    """pytorch-lr-finder's smoothing: s_k = f·loss_k + (1 - f)·s_(k-1), no bias correction."""
    out: list[float] = []
    for loss in losses:
        out.append(loss if not out else PEER_SMOOTH_F * loss + (1 - PEER_SMOOTH_F) * out[-1])
    return out


def score(ctx: Context, lr: float | None, budget: int, seeds: int) -> float:
    if lr is None:
        return math.nan
    finals = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        model = ctx.fresh_model().train()
        trainer = Trainer(ctx, model, torch.optim.Adam(model.parameters(), lr=lr))
        losses = [trainer.step(*ctx.next_batch()).loss for _ in range(budget)]
        tail = losses[-TAIL:]
        finals.append(statistics.mean(tail) if all(math.isfinite(v) for v in tail) else math.inf)
    return statistics.mean(finals)


def fmt(lr: float | None, loss: float) -> str:
    return f"{'-' if lr is None else f'{lr:.1e}':>8} {loss:8.4f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--budget", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=2)
    args = parser.parse_args()
    columns = ("grid best", "nndiag", "steepest", "valley")
    print(f"{'model':11} " + " ".join(f"{c + ' lr':>8} {'loss':>8}" for c in columns))
    wins = 0
    models = 0
    for name, ctx in contexts(args.device):
        result = run_probe(ProbeName.LR_RANGE, ctx)
        rows = result.table("curve").rows
        lrs, raw = [r["lr"] for r in rows], [r["loss"] for r in rows]
        picks = {
            "nndiag": result.metrics["suggested_lr"],
            "steepest": steepest(lrs, peer_ema(raw)),
            "valley": valley(lrs, smooth(raw)),
        }
        grid = {lr: score(ctx, lr, args.budget, args.seeds) for lr in GRID}
        best_lr = min(grid, key=grid.__getitem__)
        scores = {k: score(ctx, lr, args.budget, args.seeds) for k, lr in picks.items()}
        cells = [fmt(best_lr, grid[best_lr])] + [fmt(picks[k], scores[k]) for k in picks]
        print(f"{name:11} " + " ".join(cells))
        # A peer with no pick (NaN) cannot beat nndiag; nndiag with no pick cannot win.
        peers = [v for v in (scores["steepest"], scores["valley"]) if not math.isnan(v)]
        models += 1
        wins += scores["nndiag"] <= 1.02 * min(peers, default=math.inf)
    print(
        f"\nnndiag's pick reached a loss within 2% of the best peer pick (or better) on "
        f"{wins}/{models} models"
    )


if __name__ == "__main__":
    main()
