"""What every benchmark result records beside its numbers: the commit (and whether the tree had
uncommitted changes), a fingerprint of nndiag's sources, the machine, torch's version and the
date, so that a figure in the README can always be traced to the code and machine behind it.

Every script ends in `record(name, tables, args)`: results/<name>.json, from which
`readme.py` generates the README's tables."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def fingerprint() -> str:
    """The first 12 hex digits of a hash over nndiag's Python sources (path and content)."""
    digest = hashlib.sha1()
    for path in sorted((ROOT / "nndiag").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=ROOT, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores"


def stamp() -> dict[str, Any]:
    import torch

    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--", "nndiag"))
    return {
        "load": round(os.getloadavg()[0], 1),  # other work on the machine skews timings
        "commit": commit + ("+dirty" if dirty else ""),
        "fingerprint": fingerprint(),
        "machine": machine(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).date().isoformat(),
    }


# ---- the record every script writes and the README is generated from ------------------------


@dataclass(frozen=True)
class Table:
    """One table of a benchmark's result: raw values (numbers stay numbers in the JSON), drawn
    as markdown by `markdown`."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |",
                 "| " + " | ".join("---" for _ in self.columns) + " |"]  # fmt: skip
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines)


def cell(value: Any) -> str:
    """A table cell: three significant figures, whole numbers from 1000 up, '-' for NaN."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return "-"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark script takes."""
    parser.add_argument("--toy", action="store_true",
                        help="the smallest run that exercises every path (CI runs each script so)")  # fmt: skip
    parser.add_argument("--results", type=Path, default=RESULTS, help="the folder results go to")


def record(
    name: str,
    tables: list[Table],
    args: argparse.Namespace,
    notes: tuple[str, ...] = (),
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write results/<name>.json (stamp, arguments, tables, notes) and print the tables."""
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
               if k != "results"}  # fmt: skip
    where = {"device": device_name(getattr(args, "device", "cpu"))}
    script = Path(sys.argv[0]).resolve().relative_to(ROOT / "benchmarks").as_posix()
    result = {"benchmark": name, "script": script, "stamp": {**stamp(), **where}, "args": options, "notes": list(notes),
              "tables": [dataclasses.asdict(t) for t in tables], **(extra or {})}  # fmt: skip
    args.results.mkdir(parents=True, exist_ok=True)
    path = args.results / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, default=_plain) + "\n")
    for table in tables:
        print(table.markdown() + "\n")
    for note in notes:
        print(note)
    print(f"wrote {path}")
    return path


def device_name(device: str) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"


def _plain(value: Any) -> Any:
    """JSON for what json cannot write itself (torch/numpy scalars)."""
    return value.item() if hasattr(value, "item") else str(value)
