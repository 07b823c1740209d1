"""The registry sweep: nndiag's default check on every architecture of the zoo (every timm family,
every transformers model type that builds small, models in the style of public projects), each
with random init and learnable data, in its own process (a crash, a hang or a leak stays there).

    python benchmarks/registry.py                       # everything not yet checked at this code
    python benchmarks/registry.py --source timm --workers 2
    python benchmarks/registry.py --only transformers/gpt2 timm/levit_128s --rerun
    python benchmarks/registry.py --table               # rewrite the table from the results

Resumable: each architecture's result is one line of benchmarks/results/registry.jsonl, stamped
with the commit, the machine, torch and a fingerprint of nndiag's sources; a result at the same
fingerprint is not run again, so the sweep can go on across sessions. An architecture that
cannot be built small, or whose step is too slow for the sweep, is an exclusion with its reason.
benchmarks/results/registry.md (the table) is generated from the results file.

A healthy architecture must get no error and no warning (root findings; infos are allowed).

Held-out calibration: every family falls in one of two halves by a hash of its name (`half`),
the same in every session. A threshold or rule may be changed for an architecture of the tuning
half only; the held-out half is the acceptance test that no change was fitted to, and the table
reports both halves side by side.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from stamp import Table, arguments, fingerprint, record, stamp  # noqa: E402

TOY = ["project/deeponet"]  # a --toy sweep: one small project model, checked again
TIMEOUT_S = 900.0
SOURCES = ("timm", "transformers", "project")


# ---- the zoo ------------------------------------------------------------------------------------


def zoo(sources: Iterable[str]) -> dict[str, Any]:
    from zoo import hf_zoo, projects, timm_zoo

    makers = {"timm": timm_zoo.archs, "transformers": hf_zoo.archs, "project": projects.archs}
    found = {}
    for source in sources:
        for arch in makers[source]():
            found[arch.name] = arch
    return found


# ---- one architecture, in a worker process ------------------------------------------------------


def check_one(name: str) -> dict[str, Any]:
    import torch

    import nndiag

    from zoo.base import Excluded

    torch.set_num_threads(1)
    source, _, short = name.partition("/")
    if source == "transformers":
        from zoo import hf_zoo

        arch = hf_zoo.arch_named(short)
    else:
        arch = zoo([source])[name]
    record: dict[str, Any] = {"name": name, "family": arch.family, "domain": arch.domain}
    started = time.perf_counter()
    try:
        model = arch.build()
    except Excluded as exc:
        return {**record, "outcome": "excluded", "reason": str(exc)}
    record["parameters"] = sum(p.numel() for p in model.parameters())
    report = nndiag.check(
        model, make_batch=arch.make_batch, loss_fn=arch.loss_fn, device="cpu",
        batch_size=arch.batch_size,
    )  # fmt: skip
    roots = [f for f in report.findings if f.caused_by is None]
    counts = Counter(f.severity.value for f in roots)
    return {
        **record,
        "outcome": "checked",
        "errors": counts["error"],
        "warnings": counts["warning"],
        "infos": counts["info"],
        "findings": [_finding(f) for f in report.findings],
        "unfinished": {r.name: r.error[:300] for r in report.unfinished},
        "seconds": round(time.perf_counter() - started, 1),
    }


def _finding(f: Any) -> dict[str, Any]:
    return {"code": f.code, "severity": f.severity.value, "root": f.caused_by is None,
            "probe": f.probe, "message": f.message[:300]}  # fmt: skip


def run_in_worker(name: str, timeout: float) -> dict[str, Any]:
    # The nndiag beside this script, not whichever is installed: a sweep run from a worktree of
    # one commit checks that commit's code, whatever the main tree becomes meanwhile.
    path = os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error",
           "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}  # fmt: skip
    command = [sys.executable, str(Path(__file__).resolve()), "--one", name]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE
        )
    except subprocess.TimeoutExpired:
        return {"name": name, "outcome": "timeout", "reason": f"no result within {timeout:g} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"name": name, "outcome": "crashed", "reason": tail[:300],
                "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
    return json.loads(lines[-1])


# ---- results ------------------------------------------------------------------------------------


def load(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {row["name"]: row for row in rows}


def save(results: dict[str, dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(results[k], sort_keys=True) + "\n" for k in sorted(results))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def half(family: str) -> str:
    """'tuning' or 'held-out', by a stable hash of the family (never split across halves)."""
    return ("tuning", "held-out")[hashlib.sha256(family.encode()).digest()[0] % 2]


def healthy(row: dict[str, Any]) -> bool:
    return row["errors"] == 0 and row["warnings"] == 0 and not row["unfinished"]


def _counts(rows: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    return (len(rows), sum(healthy(r) for r in rows), sum(r["errors"] > 0 for r in rows),
            sum(r["warnings"] > 0 for r in rows))  # fmt: skip


def summaries(results: dict[str, dict[str, Any]]) -> list[Table]:
    """Totals per source and domain, and per calibration half."""
    checked = [r for r in results.values() if r["outcome"] == "checked"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in checked:
        groups[(row["name"].split("/")[0], row["domain"])].append(row)
    counts = ("checked", "0 errors and 0 warnings", "with an error", "with a warning")
    by_source = [(source, domain, *_counts(rows), sum(bool(r["unfinished"]) for r in rows))
                 for (source, domain), rows in sorted(groups.items())]  # fmt: skip
    by_source.append(("all", "", *_counts(checked), sum(bool(r["unfinished"]) for r in checked)))
    halves = [(name, *_counts([r for r in checked if half(r["family"]) == name]))
              for name in ("tuning", "held-out")]  # fmt: skip
    return [
        Table("Per source and domain", ("source", "domain", *counts, "probes unfinished"),
              by_source),
        Table("Per calibration half", ("half", *counts), halves),
    ]  # fmt: skip


def table(results: dict[str, dict[str, Any]]) -> str:
    """The published table: totals per source and domain, every model with an error or a
    warning (its root codes), and every exclusion with its reason."""
    checked = [r for r in results.values() if r["outcome"] == "checked"]
    others = [r for r in results.values() if r["outcome"] != "checked"]
    stamps = Counter(r.get("fingerprint", "?") for r in checked)
    lines = [
        "# Registry sweep: nndiag's default check on architectures nobody calibrated by hand",
        "",
        "Generated by `python benchmarks/registry.py --table` from `benchmarks/results/registry.jsonl`",
        "(command: `python benchmarks/registry.py --workers 2`). Every architecture is built small with",
        "random init and learnable data; a healthy one must get no error and no warning (root",
        "findings; infos allowed).",
        "",
        f"Checked: {len(checked)} architectures; nndiag fingerprints: "
        + ", ".join(f"`{k}` ({v})" for k, v in stamps.most_common()),
        f"Commits: {', '.join(sorted({r.get('commit', '?') for r in checked}))}",
        "",
        *(t.markdown() + "\n" for t in summaries(results)),
        "Held-out half: families by a hash of their name (`registry.half`); since the split was "
        "introduced, rules and thresholds are changed only for architectures of the tuning half "
        "(benchmarks/README.md says which earlier fixes drew on both).",
    ]
    flagged = [r for r in checked if not healthy(r)]
    lines += [
        "",
        f"## Architectures with an error, a warning or an unfinished probe ({len(flagged)})",
        "",
    ]
    if flagged:
        lines += [
            "| architecture | family | half | root findings | unfinished |",
            "| --- | --- | --- | --- | --- |",
        ]
        for r in sorted(flagged, key=lambda r: r["name"]):
            roots = ", ".join(
                f"{f['code']} ({f['severity']})" for f in r["findings"]
                if f["root"] and f["severity"] != "info"
            )  # fmt: skip
            lines.append(
                f"| {r['name']} | {r['family']} | {half(r['family'])} | {roots} | "
                f"{', '.join(r['unfinished'])} |"
            )
    else:
        lines.append("None.")
    lines += ["", f"## Exclusions ({len(others)})", "", "| architecture | outcome | reason |",
              "| --- | --- | --- |"]  # fmt: skip
    for r in sorted(others, key=lambda r: r["name"]):
        reason = r.get("reason", "").replace("|", "/")
        lines.append(f"| {r['name']} | {r['outcome']} | {reason} |")
    return "\n".join(lines) + "\n"


# ---- main ---------------------------------------------------------------------------------------


def sweep(
    names: list[str], results: dict[str, dict[str, Any]], workers: int, timeout: float, path: Path
) -> None:
    stamped = stamp()
    done = 0

    def one(name: str) -> dict[str, Any]:
        return {**run_in_worker(name, timeout), **stamped}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for row in pool.map(one, names):
            results[row["name"]] = row
            save(results, path)
            done += 1
            mark = row["outcome"] if row["outcome"] != "checked" else (
                "ok" if healthy(row) else f"E{row['errors']} W{row['warnings']}")  # fmt: skip
            codes = " ".join(sorted({f["code"] for f in row.get("findings", []) if f["root"]}))
            print(f"[{done}/{len(names)}] {mark:8} {row['name']:48} {row.get('seconds', '')}s "
                  f"{codes} {row.get('reason', '')[:120]}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", nargs="*", choices=SOURCES, default=list(SOURCES))
    parser.add_argument("--only", nargs="*", default=[], help="architecture names")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    parser.add_argument("--rerun", action="store_true", help="also those checked at this code")
    parser.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")
    parser.add_argument("--table", action="store_true", help="only rewrite the tables")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the worker
    arguments(parser)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(check_one(args.one)), flush=True)
        return
    if args.toy:
        args.only, args.rerun = TOY, True
    rows_file = args.results / "registry.jsonl"
    results = load(rows_file)
    if not args.table:
        names = args.only or sorted(zoo(args.source))
        current = fingerprint()
        todo = [
            n for n in names
            if args.rerun or results.get(n, {}).get("fingerprint") != current
        ]  # fmt: skip
        todo.sort(key=lambda n: n in results)  # never checked first: a partial sweep widens
        todo = todo[: args.limit] if args.limit else todo
        print(f"{len(todo)} of {len(names)} architectures to check at {current}", flush=True)
        sweep(todo, results, args.workers, args.timeout, rows_file)
    table_file = args.results / "registry.md"
    table_file.write_text(table(results))
    print(f"wrote {table_file}")
    record("registry", summaries(results), args,
           notes=("Every flagged architecture and every exclusion: [results/registry.md]"
                  "(results/registry.md).",))  # fmt: skip


if __name__ == "__main__":
    main()
