"""The default `nndiag check` of real-sized models, as a user runs it: wall time against the
budget the check planned, the per-probe split, and the one-screen report (lines at 120 columns,
the verdict on line 1, no `nan`).

    python benchmarks/real_size/run.py                 # GPT-2 small and ResNet-50
    python benchmarks/real_size/run.py resnet50 --budget 60

Each check runs in its own process, exactly as `nndiag check MODEL --json OUT` at 120 columns.
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
MODELS = ("gpt2_small", "resnet50")


def check(name: str, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        command = ["nndiag", "check", str(HERE / f"{name}.py"), "--json", str(out), *extra]
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
        "notes": report.get("notes", []),
        "stdout": done.stdout,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", help=f"of {', '.join(MODELS)} (default: both)")
    parser.add_argument("--budget", help="pass --budget SECONDS (default: the default budget)")
    parser.add_argument("--show", action="store_true", help="print each report")
    args = parser.parse_args()
    if unknown := set(args.models) - set(MODELS):
        parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    extra = ["--budget", args.budget] if args.budget else []
    for name in args.models or MODELS:
        r = check(name, extra)
        print(f"## {name}: exit {r['exit']}, {r['wall_s']:.0f} s wall, {r['lines']} lines, "
              f"nan: {'yes' if r['nan'] else 'no'}")  # fmt: skip
        print(f"line 1: {r['first']}")
        for note in r["notes"] + r["stderr"][-3:]:
            print(f"note: {note}")
        print("| probe | seconds | cut |\n| --- | --- | --- |")
        for probe, seconds, cut in r["probes"]:
            print(f"| {probe} | {seconds:.1f} | {cut or ''} |")
        if args.show:
            print(r["stdout"])
        sys.stdout.flush()


if __name__ == "__main__":
    main()
