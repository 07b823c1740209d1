"""A distributed check against the single-process check on the same model: wall time, each rank's
peak memory, and the parameter bytes each rank holds in a sharded copy.

    python benchmarks/distributed.py                      # 2 ranks, gloo on CPU, a GPT-2 of 4 layers
    python benchmarks/distributed.py --ranks 4 --layers 8
    python benchmarks/distributed.py --toy               # 1 layer, gradients only, no ddp run

Three runs of `nndiag check` with every probe: one process, then `torchrun --nproc_per_node N`
with `--distributed ddp` and with `--distributed fsdp`. Each rank reports its peak resident set
(VmHWM: the whole process, torch and the user's model built whole on every rank included) and the
bytes of parameters its shard of an FSDP2 copy holds (about 1/N of the model). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stamp import Table, arguments, record

ROOT = Path(__file__).resolve().parent.parent
MB = 2**20
MODEL = """
import torch
from nndiag.synthetic import markov_tokens


def build_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer={layers}, n_head=4, n_embd=256, vocab_size=2000, n_positions=128)
    return GPT2LMHeadModel(config)


def make_batch(batch_size=8):
    stream = markov_tokens(batch_size, 65, 2000)
    return {{"input_ids": stream[:, :-1]}}, stream[:, 1:]
"""


def peak_rss() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024.0
    return float("nan")


def worker(target: str, strategy: str, out: str, probes: str) -> None:
    """One rank (or the single process): the bytes of parameters its shard of an FSDP2 copy
    holds, then the check, then its figures as a JSON line. Under torchrun the process group is
    made once, here, and the check runs in it (a second group in the same process could read the
    first one's stale rendezvous keys and wait forever)."""
    import torch

    import nndiag
    from nndiag.loading import load_spec

    model = load_spec(target).factory()
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    held = total
    if strategy != "none":
        import torch.distributed as dist

        dist.init_process_group("gloo")
    if strategy == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        from nndiag.distributed import largest_stack, local

        mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        for block in largest_stack(model):
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
        held = sum(local(p).numel() * p.element_size() for p in model.parameters())
    started = time.perf_counter()
    chosen = probes.split(",") if probes else None
    report = nndiag.check(target, distributed=strategy, budget=0, probes=chosen)
    seconds = time.perf_counter() - started
    rank = int(os.environ.get("RANK", 0))
    row = {
        "rank": rank, "seconds": seconds, "peak_rss": peak_rss(), "params": total, "held": held,
        "codes": sorted({f.code for f in report.findings}), "threads": torch.get_num_threads(),
    }  # fmt: skip
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")
    if strategy != "none":
        dist.destroy_process_group()


def run(target: Path, strategy: str, ranks: int, out: Path, probes: str) -> float:
    out.unlink(missing_ok=True)
    here = [str(Path(__file__).resolve()), "--worker", str(target), strategy, str(out), probes]
    if strategy == "none":
        command = [sys.executable, *here]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = str(s.getsockname()[1])
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
            "--master_port", port, *here,
        ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // ranks))}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{strategy}: exit {done.returncode}\n{done.stderr[-2000:]}")
    return time.perf_counter() - started


def ranks_rows(folder: Path, args: argparse.Namespace) -> list[tuple[object, ...]]:
    """One row per run: one process, then each strategy under torchrun."""
    target = folder / "gpt2.py"
    target.write_text(MODEL.format(layers=args.layers))
    out = folder / "ranks.jsonl"
    rows, baseline = [], None
    for strategy in ("none", "fsdp") if args.toy else ("none", "ddp", "fsdp"):
        wall = run(target, strategy, args.ranks, out, args.probes)
        ranks = sorted(
            (json.loads(line) for line in out.read_text().splitlines()), key=lambda r: r["rank"]
        )
        codes = ranks[0]["codes"]
        baseline = codes if baseline is None else baseline
        rows.append((
            "one process" if strategy == "none" else f"{strategy}, {args.ranks} ranks",
            wall, max(r["seconds"] for r in ranks),
            " / ".join(f"{r['peak_rss'] / MB:.0f}" for r in ranks),
            " / ".join(f"{r['held'] / MB:.1f}" for r in ranks) + f" of {ranks[0]['params'] / MB:.1f}",
            "yes" if all(r["codes"] == baseline for r in ranks) else f"NO: {codes}",
        ))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--probes", default="", help="comma-separated (default: every probe)")
    parser.add_argument("--worker", nargs=4, metavar=("TARGET", "STRATEGY", "OUT", "PROBES"))
    arguments(parser)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    if args.toy:
        args.layers, args.probes = 1, "gradients"
    with tempfile.TemporaryDirectory(prefix="nndiag-distributed-") as folder:  # this run's own
        rows = ranks_rows(Path(folder), args)
    title = (f"GPT-2 of {args.layers} layers (width 256, vocab 2000), batch 8 of 64 tokens, "
             f"{args.probes or 'every probe'}")  # fmt: skip
    columns = ("run", "wall s", "check s (slowest rank)", "peak RSS MB per rank",
               "parameter MB held per rank", "same codes")  # fmt: skip
    record("distributed", [Table(title, columns, rows)], args)


if __name__ == "__main__":
    main()
