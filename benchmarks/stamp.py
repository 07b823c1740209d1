"""What every benchmark result records beside its numbers: the commit (and whether the tree had
uncommitted changes), a fingerprint of nndiag's sources, the machine, torch's version and the
date, so that a figure in the README can always be traced to the code and machine behind it."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
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
        "commit": commit + ("+dirty" if dirty else ""),
        "fingerprint": fingerprint(),
        "machine": machine(),
        "torch": torch.__version__,
        "date": datetime.now(UTC).date().isoformat(),
    }
