"""The default `nndiag check` of real-sized models, as a user runs it, priced in the model's own
training steps: a plain PyTorch step of the same model, batch and loss (Adam, warm-up excluded,
the median of timed steps) is measured in the same run, and the check's wall time, each probe's
time and the cuts the budget made are recorded beside it; the sick twins must keep their
findings under the default plan. The report's shape too: lines at 120 columns, the verdict on
line 1, no `nan`.

    python benchmarks/real_size/run.py                 # every model below
    python benchmarks/real_size/run.py resnet50 sick_resnet50 --budget 60
    python benchmarks/real_size/run.py gpt2_small --device cuda   # on a GPU

Each check runs in its own process, exactly as `nndiag check MODEL --json OUT` at 120 columns,
and so does each plain step timing. Each run is stamped (commit, machine, torch, date) into
results/real_size.json, one entry per model (and per --budget given), kept across invocations;
the tables are drawn from all of them. `--toy` checks toy.py, a small CNN, with 20 steps.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
MODELS = ("gpt2_small", "resnet50", "sick_gpt2_small", "sick_resnet50")
# The root each sick twin must keep.
EXPECTED = {"sick_resnet50": "no-gradient", "sick_gpt2_small": "causal-leak"}
sys.path.insert(0, str(HERE.parent))

from stamp import Table, arguments, device_name, record, stamp  # noqa: E402

WARMUP, TIMED = 2, 5


def plain_step_s(name: str, device: str) -> float:
    """The median wall time of a plain training step of the model file's model on its default
    batch (Adam; cross-entropy on the logits), after WARMUP untimed steps: what a user's loop
    pays per step. On a GPU each step ends in a synchronize, as the check's own timing does."""
    import importlib.util
    import statistics

    import torch
    import torch.nn.functional as F

    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build_model().train().to(device)
    inputs, targets = module.make_batch()
    targets = targets.to(device)
    inputs = (
        {k: v.to(device) for k, v in inputs.items()}
        if isinstance(inputs, dict)
        else inputs.to(device)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    times = []
    for i in range(WARMUP + TIMED):
        started = time.perf_counter()
        out = model(**inputs) if isinstance(inputs, dict) else model(inputs)
        logits = getattr(out, "logits", out)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= WARMUP:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def timed_in_a_process(name: str, device: str) -> float:
    done = subprocess.run(
        [sys.executable, __file__, "--plain", name, "--device", device],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def check(name: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "nndiag", "check", str(HERE / f"{name}.py"), "--json",
                   str(out), *extra]  # fmt: skip
        env = {**os.environ, "COLUMNS": "120", "TERM": "dumb"}
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - started
        report = json.loads(out.read_text()) if out.exists() else {}
    lines = done.stdout.rstrip("\n").splitlines()
    return {
        "name": name,
        "exit": done.returncode,
        "wall_s": wall,
        "lines": len(lines),
        "first": lines[0] if lines else "",
        "nan": bool(re.search(r"\bnan\b", done.stdout, re.IGNORECASE)),
        "stderr": done.stderr.strip().splitlines(),
        "probes": [(p["name"], p["seconds"], p["cut"]) for p in report.get("probes", ())],
        "roots": sorted(
            {
                (f["code"], f["severity"])
                for f in report.get("findings", ())
                if not f.get("caused_by")
            }
        ),
        "notes": report.get("notes", []),
        "stdout": done.stdout,
    }


def tables(runs: dict[str, dict]) -> list[Table]:
    """Each run's cost in its model's own training steps, then where the time went."""
    whole = [(name, r["commit"], r.get("device", "CPU"), r["plain_step_s"], r["check_wall_s"], r["check_steps"],
              "; ".join(f"{p['name']} ({p['cut']})" for p in r["probes"] if p["cut"]) or "none",
              ", ".join(f"{c} ({s})" for c, s in r["roots"]) or "none", r["exit"])
             for name, r in sorted(runs.items())]  # fmt: skip
    split = [(name, p["name"], p["seconds"], p["steps"]) for name, r in sorted(runs.items())
             for p in r["probes"]]  # fmt: skip
    return [
        Table("The default check in the model's own training steps",
              ("run", "commit", "device", "plain step s", "check wall s", "in plain steps", "cuts", "roots",
               "exit"), whole),
        Table("Per probe", ("run", "probe", "seconds", "plain steps"), split),
    ]  # fmt: skip


def measure(name: str, extra: list[str], device: str, show: bool) -> dict:
    """One model's plain step and check, printed as it goes, as a stamped run."""
    step = timed_in_a_process(name, device)
    r = check(name, [*extra, "--device", device])
    steps = r["wall_s"] / step
    print(f"## {name}: exit {r['exit']}, {r['wall_s']:.0f} s wall = {steps:.0f} plain steps "
          f"of {step:.2f} s, {r['lines']} lines, nan: {'yes' if r['nan'] else 'no'}")  # fmt: skip
    print(f"line 1: {r['first']}")
    if name in EXPECTED and EXPECTED[name] not in {c for c, _ in r["roots"]}:
        print(f"MISSED: {name} must keep {EXPECTED[name]}")
    for note in r["notes"] + r["stderr"][-3:]:
        print(f"note: {note}")
    if show:
        print(r["stdout"])
    sys.stdout.flush()
    return {
        **stamp(), "device": device_name(device), "plain_step_s": step,
        "check_wall_s": r["wall_s"], "check_steps": steps,
        "exit": r["exit"], "lines": r["lines"], "nan": r["nan"], "roots": r["roots"],
        "budget": extra[-1] if extra else "default", "notes": r["notes"],
        "probes": [{"name": p, "seconds": sec, "steps": sec / step, "cut": cut}
                   for p, sec, cut in r["probes"]],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=f"of {', '.join(MODELS)} (default: all)")
    parser.add_argument("--budget", help="pass --budget (default: the default budget)")
    parser.add_argument("--show", action="store_true", help="print each report")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (plain step and check)")
    parser.add_argument("--merge", type=Path, help="add another machine's real_size.json runs")
    parser.add_argument("--plain", help=argparse.SUPPRESS)  # the step-timing worker
    arguments(parser)
    args = parser.parse_args()
    if args.plain:
        print(plain_step_s(args.plain, args.device))
        return
    if unknown := set(args.models) - set(MODELS):
        parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    if args.toy:
        args.models, args.budget = ["toy"], "20steps"
    extra = ["--budget", args.budget] if args.budget else []
    path = args.results / "real_size.json"
    runs = json.loads(path.read_text()).get("runs", {}) if path.exists() else {}
    if args.merge:
        runs.update(json.loads(args.merge.read_text())["runs"])
    for name in [] if args.merge else args.models or MODELS:
        key = " ".join([name, *extra, *(["--device", args.device] if args.device != "cpu" else [])])
        runs[key] = measure(name, extra, args.device, args.show)
    record("real_size", tables(runs), args, extra={"runs": runs})


if __name__ == "__main__":
    main()
