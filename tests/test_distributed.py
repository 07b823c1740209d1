"""Two processes under torchrun (gloo, CPU) give the single-process check's findings and per-layer
gradient norms, for FSDP2 and for DDP, with every probe; sick models fail the run with the codes
one process finds."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import nndiag

from conftest import ROOT, StrictRunner

MODEL = """
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        return x + torch.relu(self.fc(self.norm(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 32)
        self.blocks = nn.ModuleList(Block(32) for _ in range(3))
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = block(h)
        return self.head({detach}h)


def build_model():
    torch.manual_seed(0)
    return Net()


def make_batch(batch_size=16):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch_size, 8, generator=g)
    return x, (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
"""
SICK = {  # a sample for each probe the healthy model above leaves without a finding
    "sick_raw_pixels.py": "data",
    "sick_dead_relu.py": "activations",
    "sick_linear_stack.py": "jacobian",
    "sick_no_causal_mask.py": "dependencies",
    "sick_fp16_overflow.py": "precision",
    "sick_list_layers.py": "structure",
    "sick_detached.py": "gradients",
    "sick_nograd_backbone.py": "gradients",
}


BUILD = """
def build_model():
    torch.manual_seed(0)
    return Net()
"""
META_BUILD = """
def build_model():
    with torch.device("meta"):  # no rank ever holds the whole model's weights
        return Net()


def init_weights(model):
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.LayerNorm)):
            module.reset_parameters()
"""


def model_file(tmp_path: Path, sick: bool = False, meta: bool = False) -> Path:
    path = tmp_path / (("sick" if sick else "model") + ("_meta" if meta else "") + ".py")
    text = MODEL.format(detach="torch.zeros_like(h) * " if sick else "")
    path.write_text(text.replace(BUILD, META_BUILD) if meta else text)
    return path


def torchrun_command(target: Path, strategy: str, report: Path | None, *options: str) -> list[str]:
    """torchrun on one node (--standalone: it picks its own free port, no race between tests),
    on the CPU even on a GPU host, at no time budget (the plan cannot depend on load)."""
    exports = ["--json", str(report)] if report is not None else []
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "nndiag", "check", str(target), "--distributed", strategy, "--device", "cpu",
        "--budget", "0", *exports, *options,
    ]  # fmt: skip


def finished(
    process: subprocess.Popen[str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Wait for a torchrun; on timeout kill its whole process group (the ranks too, not only
    the launcher), then fail."""
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        pytest.fail(f"torchrun did not finish within {timeout:g} s: {process.args}")
    done = subprocess.CompletedProcess(process.args, process.returncode, out, err)
    assert_no_signal_death(done)
    return done


def assert_no_signal_death(done: subprocess.CompletedProcess[str]) -> None:
    """Every rank ended by itself, even where exit 1 is expected: torchrun reports a rank
    killed by a signal as a negative exit code, and a C++ abort prints 'terminate called'."""
    text = done.stdout + done.stderr
    assert "terminate called" not in text, text[-3000:]
    assert not re.search(r"exitcode\s*:\s*-\d+", text), text[-3000:]


def start(target: Path, strategy: str, report: Path | None, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        torchrun_command(target, strategy, report, *options), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT, start_new_session=True,
    )  # fmt: skip


def torchrun(
    target: Path, strategy: str, report: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    return finished(start(target, strategy, report, *options))


def grad_norms(probes: list[dict[str, Any]]) -> dict[str, float]:
    (gradients,) = [p for p in probes if p["name"] == "gradients"]
    return {r["parameter"]: r["grad_norm"] for r in gradients["tables"]["parameters"]["rows"]}


def assert_same_metrics(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """Numbers within 1e-4 relative, everything else (labels, flags, lists) equal."""
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        number = isinstance(value, float) and not isinstance(value, bool)
        assert got[key] == (pytest.approx(value, rel=1e-4) if number else value), key


def findings(probes: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((f["probe"], f["code"], f["severity"]) for p in probes for f in p["findings"])


@pytest.mark.parametrize("strategy", ["fsdp", "ddp"])
def test_two_ranks_agree_with_one_process(tmp_path: Path, strategy: str) -> None:
    target = model_file(tmp_path)
    single = json.loads(nndiag.check(str(target), steps=40).to_json())["probes"]
    done = torchrun(target, strategy, tmp_path / "r.json", "--steps", "40")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("nndiag: ready to train") == 1  # rank 0 alone renders
    ranked = json.loads((tmp_path / "r.json").read_text())["probes"]
    assert [(p["name"], p["status"]) for p in ranked] == [(p["name"], "ok") for p in single]
    assert findings(ranked) == findings(single)
    by_name = {p["name"]: p for p in ranked}
    for p in single:  # the activation sums are reduced; the replicated probes compute the same
        if p["name"] in ("activations", "data", "jacobian", "dependencies", "structure"):
            assert_same_metrics(by_name[p["name"]]["metrics"], p["metrics"])
    one, two = grad_norms(single), grad_norms(ranked)
    assert one.keys() == two.keys() and len(one) == 16
    for name, norm in one.items():
        assert two[name] == pytest.approx(norm, rel=1e-4), name
    overfit = {p["name"]: p for p in ranked}["overfit"]["metrics"]
    assert (
        overfit["steps_to_pass"]
        == {p["name"]: p for p in single}["overfit"]["metrics"]["steps_to_pass"]
    )


def test_a_sick_model_fails_the_distributed_run(tmp_path: Path) -> None:
    """The output is multiplied by zero: the root is output-ignores-input (error), and what it
    causes (no gradient reaches the layers before, nothing memorised) is nested under it."""
    probes = ["--probe", "init-loss", "--probe", "gradients", "--probe", "overfit", "--steps", "40"]
    done = torchrun(model_file(tmp_path, sick=True), "fsdp", tmp_path / "r.json", *probes)
    assert done.returncode == 1, done.stderr[-3000:]
    found = json.loads((tmp_path / "r.json").read_text())["findings"]
    roots = {(f["code"], f["severity"]) for f in found if f["caused_by"] is None}
    under = {(f["code"], f["caused_by"]["code"]) for f in found if f["caused_by"] is not None}
    assert roots == {("output-ignores-input", "error")}
    assert under == {
        ("overfit-failed", "output-ignores-input"),
        ("no-gradient", "output-ignores-input"),
    }


@pytest.mark.parametrize("sick", [False, True])
def test_a_model_built_on_meta_is_sharded_then_placed(tmp_path: Path, sick: bool) -> None:
    target = model_file(tmp_path, sick=sick, meta=True)
    options = [
        "--probe",
        "init-loss",
        "--probe",
        "gradients",
        "--probe",
        "overfit",
        "--steps",
        "40",
    ]
    single = nndiag.check(str(target), probes=["init-loss", "gradients", "overfit"], steps=40)
    assert single.result("gradients").table("parameters").rows[-1]["grad_norm"] > 0  # placed
    done = torchrun(target, "fsdp", tmp_path / "r.json", *options)
    assert done.returncode == (1 if sick else 0), done.stderr[-3000:]
    ranked = json.loads((tmp_path / "r.json").read_text())["probes"]
    single_codes = {f.code for f in single.findings}
    assert {code for _, code, _ in findings(ranked)} == single_codes
    assert bool(single_codes) is sick


def test_meta_copies_are_prepared_before_they_are_placed() -> None:
    """Sharding (prepare) sees the meta model; only then is it placed and initialised, the same
    way on every copy, and the user's model stays on meta."""
    import torch
    from torch import nn

    from nndiag.core.context import ModelCopier

    on_meta: list[bool] = []

    def prepare(model: nn.Module) -> nn.Module:
        on_meta.append(all(p.is_meta for p in model.parameters()))
        return model

    with torch.device("meta"):
        model = nn.Linear(4, 2)
    copier = ModelCopier(
        model, torch.device("cpu"), prepare=prepare, init_weights=nn.Linear.reset_parameters, seed=3
    )
    first, second = copier.copy(), copier.copy()
    assert on_meta == [True, True]
    assert not first.weight.is_meta and torch.equal(first.weight, second.weight)
    assert model.weight.is_meta


def test_a_meta_model_without_init_weights_is_a_usage_error(tmp_path: Path) -> None:

    from nndiag.cli import app

    target = model_file(tmp_path, meta=True)
    target.write_text(target.read_text().replace("def init_weights", "def _unused"))
    result = StrictRunner().invoke(app, ["check", str(target), "--probe", "summary"])
    assert result.exit_code == 2
    assert "meta device" in result.output and "init_weights" in result.output
    assert "Traceback" not in result.output


CASES = [(sample, probe, "fsdp") for sample, probe in sorted(SICK.items())] + [
    ("sick_detached.py", "gradients", "ddp"),
    ("sick_nograd_backbone.py", "gradients", "ddp"),
]


@pytest.mark.parametrize(("sample", "probe", "strategy"), CASES)
def test_sick_samples_fail_alike_on_two_ranks(
    tmp_path: Path, sample: str, probe: str, strategy: str
) -> None:
    """The single-process findings, codes, severities and places, on two ranks: a detached
    branch and a backbone under no_grad are rooted where the cut is under FSDP2 and DDP too."""
    target = ROOT / "sample_models" / sample
    single_report = nndiag.check(str(target), probes=[probe], budget=0)
    single = json.loads(single_report.to_json())["probes"]
    done = torchrun(target, strategy, tmp_path / "r.json", "--probe", probe)
    ranked = json.loads((tmp_path / "r.json").read_text())["probes"]
    assert findings(ranked) == findings(single) != []
    places = lambda probes: sorted(tuple(f["where"]) for p in probes for f in p["findings"])
    assert places(ranked) == places(single)
    assert done.returncode == (1 if any(s == "error" for *_, s in findings(single)) else 0)


def test_distributed_without_torchrun_is_a_usage_error() -> None:

    from nndiag.cli import app

    result = StrictRunner().invoke(
        app, ["check", str(ROOT / "sample_models" / "mlp.py"), "--distributed", "ddp"]
    )
    assert result.exit_code == 2
    assert "torchrun" in result.output


def test_twelve_two_rank_runs_end_cleanly(tmp_path: Path) -> None:
    """Twelve runs, two at a time (a loaded machine makes exit races likelier), half healthy
    (exit 0) and half sick (exit 1, where torchrun sends SIGTERM to the ranks still running when
    the first one leaves): every run has its expected code and no rank dies of a signal. The
    race it guards against hit about 1 run in 7: twelve runs catch it 84% of the time, and every
    CI run adds twelve more."""
    healthy, sick = model_file(tmp_path), model_file(tmp_path, sick=True)
    for _ in range(6):
        pair = [
            start(target, "ddp", None, "--probe", "init-loss", "--quiet")
            for target in (healthy, sick)
        ]
        codes = [finished(process, timeout=120).returncode for process in pair]
        assert codes == [0, 1]


HANGING = """
import os
import time

import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        if os.environ.get("RANK") == "1" and torch.is_grad_enabled():
            time.sleep(600)  # rank 1 hangs in its first backward-bound forward
        return self.fc(x)


def build_model():
    return Net()


def make_batch(batch_size=16):
    x = torch.randn(batch_size, 8)
    return x, (x[:, 0] > 0).long()
"""


def test_a_hanging_rank_ends_every_rank_with_one_line(tmp_path: Path) -> None:
    """Rank 1 hangs; rank 0's collective times out (NNDIAG_COLLECTIVE_TIMEOUT), it says so in
    one line and leaves with code 2; torchrun's SIGTERM stops rank 1, which says so too."""
    target = tmp_path / "hangs.py"
    target.write_text(HANGING)
    process = subprocess.Popen(
        torchrun_command(target, "ddp", None, "--probe", "gradients", "--quiet"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        start_new_session=True, env={**os.environ, "NNDIAG_COLLECTIVE_TIMEOUT": "5"},
    )  # fmt: skip
    done = finished(process, timeout=120)
    text = done.stdout + done.stderr
    ours = [line for line in text.splitlines() if line.startswith("nndiag: error: rank")]
    assert len(ours) == 2, text[-3000:]
    assert ours[0].startswith("nndiag: error: rank 0 of 2:") or ours[1].startswith(
        "nndiag: error: rank 0 of 2:"
    )
    assert any("rank 1 of 2 stopped: torchrun sent SIGTERM" in line for line in ours)
    assert any("NNDIAG_COLLECTIVE_TIMEOUT" in line for line in ours)
    assert done.returncode != 0 and re.search(r"exitcode\s*:\s*2\b", text), text[-3000:]
    assert "/nndiag/" not in text  # no traceback through nndiag's code on any rank
