"""What the dependencies, precision and structure probes cost, as a ratio to one plain training
step (forward, backward, Adam step) of the same model on the same batch, in one run.

    python benchmarks/probe_cost.py                 # the bundled samples, CPU
    python benchmarks/probe_cost.py --device cuda
    python benchmarks/probe_cost.py --model benchmarks/real_size/gpt2_small.py

The probes' own wall time comes from the report (ProbeResult.seconds); the plain step is timed
with the same model file's batch, after a warm-up step, as the median of five.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nndiag  # noqa: E402
from nndiag.core.batches import DEFAULT_BATCH_SIZE, default_batch_size  # noqa: E402
from nndiag.loading import load_spec  # noqa: E402

from stamp import Table, arguments, record  # noqa: E402

MODELS = ["mlp.py", "cnn.py", "char_lm.py", "llama_lm.py", "t5_seq2seq.py"]
PROBES = ["structure", "dependencies", "precision"]


def plain_step_seconds(target: str, device: str) -> float:
    spec = load_spec(target)
    model = spec.factory().to(device).train()
    assert spec.make_batch is not None, f"{target} needs a make_batch"
    inputs, targets = spec.make_batch(default_batch_size(spec.make_batch) or DEFAULT_BATCH_SIZE)
    move = lambda t: t.to(device)  # noqa: E731
    inputs = {k: move(v) for k, v in inputs.items()} if isinstance(inputs, dict) else move(inputs)
    targets = move(targets)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = spec.loss_fn or (
        lambda out, y: (
            torch.nn.functional.cross_entropy(
                getattr(out, "logits", out).flatten(0, -2), y.flatten()
            )
            if not y.is_floating_point()
            else torch.nn.functional.mse_loss(out, y)
        )
    )
    times = []
    for _ in range(6):
        started = time.perf_counter()
        optimizer.zero_grad()
        out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
        loss_fn(out, targets).backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", action="append", help="model files (default: the samples)")
    arguments(parser)
    args = parser.parse_args()
    names = MODELS[:1] if args.toy else MODELS
    targets = args.model or [str(ROOT / "sample_models" / name) for name in names]
    rows = []
    for target in targets:
        step = plain_step_seconds(target, args.device)
        report = nndiag.check(target, probes=PROBES, device=args.device)
        rows.append((Path(target).name, step * 1e3,
                     *(report.result(p).seconds / step for p in PROBES)))  # fmt: skip
    title = "structure, dependencies, precision: multiples of one plain training step"
    record("probe_cost", [Table(title, ("model", "step ms", *PROBES), rows)], args)


if __name__ == "__main__":
    main()
