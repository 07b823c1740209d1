"""A CI gate that never passes by accident: hostile model files and bad options give one line
and exit 2 (or the documented behaviour), never a traceback, never a silent exit 0."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

import nndiag
from nndiag.cli import app
from nndiag.errors import ContractError, OptionError, TargetError, UserExit

from conftest import ROOT, SAMPLES, StrictRunner

runner = StrictRunner()
FAST = ["--probe", "summary", "--probe", "init-loss", "--probe", "gradients"]

HEADER = textwrap.dedent("""
    import sys, threading
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 3)

        def forward(self, x):
            return self.lin(x)


    def make_batch(n):
        return torch.randn(n, 4), torch.randint(0, 3, (n,))
""")


def model_file(tmp_path: Path, body: str, name: str = "model.py") -> str:
    path = tmp_path / name
    path.write_text(HEADER + textwrap.dedent(body))
    return str(path)


EXIT_2 = {
    "sys.exit in forward": (
        "class Quitter(Net):\n    def forward(self, x):\n        sys.exit(0)\n"
        "def build_model():\n    return Quitter()\n",
        "SystemExit(0) (at model.py:",
    ),
    "sys.exit in make_batch": (
        "def build_model():\n    return Net()\ndef make_batch(n):\n    sys.exit(3)\n",
        "SystemExit(3)",
    ),
    "BaseException subclass in the factory": (
        "class Stop(BaseException):\n    pass\ndef build_model():\n    raise Stop('no')\n",
        "Stop: no",
    ),
    "zero rows": (
        "def build_model():\n    return Net()\n"
        "def make_batch(n):\n    return torch.randn(0, 4), torch.zeros(0).long()\n",
        "zero rows",
    ),
    "make_loader returns an int": (
        "def build_model():\n    return Net()\ndef make_loader():\n    return 3\n",
        "must return an iterable of (inputs, targets), got int",
    ),
    "output is an int": (
        "class Int(Net):\n    def forward(self, x):\n        return 3\ndef build_model():\n    return Int()\n",
        "unsupported model output int",
    ),
    "output is 0-d": (
        "class Scalar(Net):\n    def forward(self, x):\n        return self.lin(x).sum()\n"
        "def build_model():\n    return Scalar()\n",
        "0-d tensor",
    ),
    "dict output without logits": (
        "class Two(Net):\n    def forward(self, x):\n        return {'a': self.lin(x), 'b': self.lin(x)}\n"
        "def build_model():\n    return Two()\n",
        "dict without 'logits' (keys: a, b)",
    ),
    "make_optimizer raises": (
        "def build_model():\n    return Net()\ndef make_optimizer(params):\n    raise ValueError('bad')\n",
        "make_optimizer(params) raised ValueError: bad",
    ),
    "make_optimizer returns LBFGS": (
        "def build_model():\n    return Net()\n"
        "def make_optimizer(params):\n    return torch.optim.LBFGS(params)\n",
        "LBFGS needs a closure",
    ),
    "make_optimizer returns a list": (
        "def build_model():\n    return Net()\ndef make_optimizer(params):\n    return list(params)\n",
        "must return a torch.optim.Optimizer, got",
    ),
}


@pytest.mark.parametrize("case", sorted(EXIT_2))
def test_hostile_file_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    body, message = EXIT_2[case]
    result = runner.invoke(app, ["check", model_file(tmp_path, body), *FAST])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nndiag: error:"), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", sorted(EXIT_2))
def test_hostile_file_raises_a_usage_error_subclass_from_the_api(tmp_path: Path, case: str) -> None:
    body, message = EXIT_2[case]
    with pytest.raises(nndiag.UsageError) as caught:
        nndiag.check(model_file(tmp_path, body), probes=["summary"])
    assert message in str(caught.value)
    assert isinstance(caught.value, (ContractError, TargetError, UserExit))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr-start", "1", "--lr-end", "0.1"], "start_lr 1 must be above 0 and below end_lr 0.1"),
        (["--lr", "inf"], "overfit: lr inf must be a positive finite number or 'suggested'"),
        (["--lr", "abc"], "lr: 'abc' is not a valid float or one of 'suggested'"),
        (["--range-mode", "cubic"], "mode: 'cubic' is not one of exp, linear"),
        (["--precision", "fp8"], "formats: 'fp8' is not one of 'all', 'fp32', 'bf16', 'fp16'"),
        (["--budget", "10min"], "invalid budget '10min': seconds (90s) or steps (200steps)"),
        (["--seed", str(2**70)], "invalid --seed"),
        (["--input-shape", "4"], "--input-shape describes synthetic batches"),
        (
            ["--details", "nope", "-p", "summary"],
            None,
        ),  # 'nope' is taken as the TARGET: no such file
        (["--bogus"], "No such option: --bogus"),
        (["--device"], "requires an argument"),
        (["--set", "overfit.steps=-1"], "must be within [1, inf]"),
        (["--set", "nope=1"], "use PROBE.KEY=VALUE"),
        (["--timeout", "5"], "--timeout needs --isolate"),
    ],
)
def test_bad_options_are_one_line_and_exit_2(args: list[str], message: str | None) -> None:
    result = runner.invoke(app, ["check", str(SAMPLES / "mlp.py"), *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nndiag: error:"), result.stderr
    if message:
        assert message in lines[0]


def test_huge_synthetic_input_shape(tmp_path: Path) -> None:
    target = tmp_path / "bare.py"
    target.write_text("from torch import nn\ndef build_model():\n    return nn.Linear(4, 2)\n")
    result = runner.invoke(app, ["check", str(target), "--input-shape", "100000,100000"])
    assert result.exit_code == 2 and "values per batch" in result.stderr


def test_api_bad_arguments() -> None:
    with pytest.raises(OptionError, match="takes a target"):
        nndiag.check(42)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="invalid --batch-size -1"):
        nndiag.check(str(SAMPLES / "mlp.py"), batch_size=-1)
    with pytest.raises(OptionError, match="did you mean 'steps'"):
        nndiag.check(str(SAMPLES / "mlp.py"), step=3)


def test_an_uncopyable_model_is_rebuilt_from_its_factory(tmp_path: Path) -> None:
    body = "class Locked(Net):\n    def __init__(self):\n        super().__init__()\n"
    body += "        self.lock = threading.Lock()\n"
    body += "def build_model():\n    return Locked()\n"
    report = nndiag.check(
        model_file(tmp_path, body), probes=["summary", "gradients", "overfit"], steps=20
    )
    assert all(r.status.value == "ok" for r in report.results), [r.error for r in report.results]
    assert any(
        "rebuilt from the factory" in note and "cannot pickle" in note for note in report.notes
    )


def test_an_uncopyable_module_without_a_factory_is_a_clear_error() -> None:
    import threading

    model = torch.nn.Linear(4, 3)
    model.lock = threading.Lock()  # type: ignore[assignment]
    with pytest.raises(ContractError, match="cannot copy the model"):
        nndiag.check(
            model, batch=(torch.randn(8, 4), torch.randint(0, 3, (8,))), probes=["summary"]
        )


def test_import_side_effects_do_not_leak_into_the_caller(tmp_path: Path) -> None:
    body = "torch.set_grad_enabled(False)\ntorch.set_num_threads(1)\nsys.path.append('/nowhere')\n"
    body += "def build_model():\n    return Net()\n"
    threads, path = torch.get_num_threads(), list(sys.path)
    report = nndiag.check(model_file(tmp_path, body), probes=["gradients", "init-loss"])
    assert torch.is_grad_enabled() and torch.get_num_threads() == threads and sys.path == path
    assert report.findings == []  # grad mode off at import must not fake a no-gradient finding


def test_default_dtype_set_by_the_file_is_restored(tmp_path: Path) -> None:
    body = "torch.set_default_dtype(torch.float64)\ndef build_model():\n    return Net()\n"
    nndiag.check(model_file(tmp_path, body), probes=["summary"])
    assert torch.get_default_dtype() == torch.float32


def test_sibling_modules_of_two_files_never_mix(tmp_path: Path) -> None:
    for name, width in (("a", 8), ("b", 16)):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "helpers.py").write_text(f"WIDTH = {width}\n")
        (folder / "model.py").write_text(
            "import torch\nfrom torch import nn\nimport helpers\n"
            "def build_model():\n    return nn.Linear(4, helpers.WIDTH)\n"
            "def make_batch(n):\n    return torch.randn(n, 4), torch.randn(n, helpers.WIDTH)\n"
        )
    first = nndiag.check(str(tmp_path / "a" / "model.py"), probes=["summary"])
    second = nndiag.check(str(tmp_path / "b" / "model.py"), probes=["summary"])
    assert first.result("summary").metrics["parameters"] == 4 * 8 + 8
    assert second.result("summary").metrics["parameters"] == 4 * 16 + 16
    assert "helpers" not in sys.modules


def test_ctrl_c_while_loading_is_exit_130(tmp_path: Path) -> None:
    body = "def build_model():\n    return Net()\ndef make_batch(n):\n    raise KeyboardInterrupt\n"
    result = runner.invoke(app, ["check", model_file(tmp_path, body)])
    assert result.exit_code == 130 and "interrupted" in result.stderr


def test_unwritable_outputs_fail_before_any_probe(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for args in (
        ["--json", "/proc/nndiag.json"],
        ["--csv", str(blocker / "sub")],
        ["--html", str(tmp_path)],
    ):
        result = runner.invoke(app, ["check", str(SAMPLES / "mlp.py"), *args])
        assert result.exit_code == 2, (args, result.output)
        assert "nndiag:" not in result.stdout  # nothing ran


def test_exports_read_back_with_pandas(tmp_path: Path) -> None:
    import pandas as pd

    out = tmp_path / "csv"
    result = runner.invoke(
        app,
        ["check", str(SAMPLES / "mlp.py"), "-p", "structure", "-p", "gradients", "--csv", str(out)],
    )
    assert result.exit_code == 0, result.output
    for path in out.iterdir():
        frame = pd.read_csv(path)  # empty tables too: a header with the columns
        assert len(frame.columns) > 0, path
    leaves = pd.read_csv(out / "structure-leaves.csv")
    assert list(leaves.columns) == ["shape", "elements", "fresh"] and leaves.empty
    report = nndiag.check(str(SAMPLES / "mlp.py"), probes=["gradients"])
    frames = report.to_frames()
    path = tmp_path / "params.csv"
    frames["gradients-parameters"].to_csv(path, index=False, na_rep="NaN")
    again = pd.read_csv(path)
    assert (
        again["signal_gain"].isna().sum()
        == frames["gradients-parameters"]["signal_gain"].isna().sum()
        > 0
    )


def test_html_holds_the_whole_report_even_when_quiet(tmp_path: Path) -> None:
    html = tmp_path / "r.html"
    result = runner.invoke(
        app, ["check", str(SAMPLES / "mlp.py"), "-q", "--html", str(html), "--skip", "overfit"]
    )
    assert result.exit_code == 0
    page = html.read_text()
    assert "gradients · parameters" in page and "<svg" in page and "lr-range" in page


# ---- --isolate: even os._exit, a crash or a hang cannot pass the gate -------------------------------


def isolated(
    tmp_path: Path, body: str, *extra: str, sigint_ignored: bool = False
) -> subprocess.CompletedProcess[str]:
    import signal

    target = model_file(tmp_path, body)
    command = [sys.executable, "-m", "nndiag", "check", target, "--isolate", *FAST, *extra]
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.run(
        command, capture_output=True, text=True, cwd=ROOT, timeout=120, preexec_fn=ignore
    )


@pytest.mark.parametrize(
    ("body", "message", "timeout"),
    [
        ("import os\nclass Gone(Net):\n    def forward(self, x):\n        os._exit(0)\n"
         "def build_model():\n    return Gone()\n", "without a report", "60"),
        ("import os, signal\nclass Crash(Net):\n    def forward(self, x):\n"
         "        os.kill(os.getpid(), signal.SIGSEGV)\n"
         "def build_model():\n    return Crash()\n", "signal SIGSEGV", "60"),
        ("import time\nclass Hang(Net):\n    def forward(self, x):\n        time.sleep(600)\n"
         "def build_model():\n    return Hang()\n", "timed out after 5 s", "5"),
    ],
    ids=["os._exit(0)", "segfault", "hang"],
)  # fmt: skip
def test_isolate_turns_exits_crashes_and_hangs_into_exit_2(
    tmp_path: Path, body: str, message: str, timeout: str
) -> None:
    # A generous timeout where the model does not hang: a loaded machine may take seconds to start.
    done = isolated(tmp_path, body, "--timeout", timeout)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in done.stderr
    assert "Traceback" not in done.stderr and "did not stop" not in done.stderr  # it did stop


def test_a_hang_stops_at_the_timeout_when_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A background job of a shell without job control (`nndiag check ... &` in a CI script)
    starts with SIGINT ignored; the child must still take the parent's stop request."""
    body = "import time\nclass Hang(Net):\n    def forward(self, x):\n        time.sleep(600)\n"
    done = isolated(tmp_path, body + "def build_model():\n    return Hang()\n", "--timeout", "5",
                    sigint_ignored=True)  # fmt: skip
    assert done.returncode == 2 and "timed out after 5 s" in done.stderr, done.stderr
    assert "did not stop" not in done.stderr


def test_sigterm_to_an_isolated_check_ends_its_child_and_temp_folder(tmp_path: Path) -> None:
    """A CI runner cancelling the job sends SIGTERM to nndiag: the child running the check goes
    too (no orphan holding the caller's pipe), and so does the temporary folder."""
    import signal
    import time

    body = "import time\nclass Hang(Net):\n    def forward(self, x):\n        time.sleep(600)\n"
    target = model_file(tmp_path, body + "def build_model():\n    return Hang()\n")
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    parent = subprocess.Popen([sys.executable, "-m", "nndiag", "check", target, "--isolate", *FAST],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 60
    while not any(temp.iterdir()) and time.monotonic() < deadline:  # the child has started
        time.sleep(0.2)
    folder = next(temp.iterdir())
    child_pid = int(subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True,
                                   text=True).stdout.split()[0])  # fmt: skip
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        for _ in range(50):  # reaped by the parent before it exits
            os.kill(child_pid, 0)
            time.sleep(0.1)
    assert not folder.exists()


def test_isolate_reports_like_in_process(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    done = isolated(tmp_path, "def build_model():\n    return Net()\n", "--json", str(report))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("nndiag: ready to train")
    assert [p["name"] for p in json.loads(report.read_text())["probes"]] == [
        "summary",
        "init-loss",
        "gradients",
    ]


# ---- fuzzing: model files and options built from parts, good and bad --------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

FACTORIES = {
    "ok": "def build_model():\n    return Net()\n",
    "raises": "def build_model():\n    raise ValueError('no')\n",
    "not a module": "def build_model():\n    return 42\n",
    "exits": "def build_model():\n    sys.exit(0)\n",
    "no parameters": "def build_model():\n    return nn.ReLU()\n",
}
FORWARDS = {
    "ok": "",
    "int": "Net.forward = lambda self, x: 3\n",
    "nan": "Net.forward = lambda self, x: self.lin(x) * float('nan')\n",
    "raises": "Net.forward = lambda self, x: 1 / 0\n",
    "tuple": "Net.forward = lambda self, x: (self.lin(x), x)\n",
}
BATCHES = {
    "ok": "",
    "zero rows": "make_batch = lambda n: (torch.randn(0, 4), torch.zeros(0).long())\n",
    "wrong width": "make_batch = lambda n: (torch.randn(n, 5), torch.randint(0, 3, (n,)))\n",
    "not a pair": "make_batch = lambda n: torch.randn(n, 4)\n",
    "regression": "make_batch = lambda n: (torch.randn(n, 4), torch.randn(n, 3))\n",
}
EXTRAS = {
    "none": "",
    "bad loss": "loss_fn = lambda out, y: (out - out).sum(dim=1)\n",
    "sgd": "make_optimizer = lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9)\n",
    "optimizer raises": "def make_optimizer(p):\n    raise RuntimeError('x')\n",
    "grad off at import": "torch.set_grad_enabled(False)\n",
}
PROBES = [
    "summary",
    "data",
    "structure",
    "init-loss",
    "gradients",
    "activations",
    "dependencies",
    "precision",
    "overfit",
]


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    factory=st.sampled_from(sorted(FACTORIES)),
    forward=st.sampled_from(sorted(FORWARDS)),
    batch=st.sampled_from(sorted(BATCHES)),
    extra=st.sampled_from(sorted(EXTRAS)),
    probes=st.lists(st.sampled_from(PROBES), min_size=1, max_size=3, unique=True),
    seed=st.integers(0, 2**63 - 1),
    batch_size=st.integers(1, 9),
)
def test_fuzzed_model_files_never_pass_by_accident(
    tmp_path: Path,
    factory: str,
    forward: str,
    batch: str,
    extra: str,
    probes: list[str],
    seed: int,
    batch_size: int,
) -> None:
    body = FACTORIES[factory] + FORWARDS[forward] + BATCHES[batch] + EXTRAS[extra]
    own = Path(tempfile.mkdtemp(dir=tmp_path))  # each example its own folder: no earlier report
    target = model_file(own, body, name=f"m{abs(hash(body)) % 10**8}.py")
    report = own / "r.json"
    args = [
        "check",
        target,
        "--seed",
        str(seed),
        "--batch-size",
        str(batch_size),
        "--steps",
        "5",
        "--json",
        str(report),
    ]
    args += [item for p in probes for item in ("-p", p)]
    result = runner.invoke(app, args)
    assert torch.is_grad_enabled() and torch.get_default_dtype() == torch.float32
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nndiag: error:"), result.stderr
        return
    data = json.loads(report.read_text())  # a complete report: every probe asked for, and more
    assert set(probes) <= {p["name"] for p in data["probes"]}
    if result.exit_code == 0:
        assert all(p["status"] in ("ok", "skipped") for p in data["probes"]), data["probes"]
        assert not [f for f in data["findings"] if f["severity"] == "error"]


def test_a_folder_target_asks_for_the_file_in_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder: give the model file in it" in result.stderr


def test_errors_point_at_the_users_line_not_the_standard_library(tmp_path: Path) -> None:
    """A forgotten breakpoint() ends in bdb.py (BdbQuit) when stdin is closed; any exception
    raised inside the standard library names the user's line that called it."""
    import json

    from nndiag.errors import describe_exception

    user = tmp_path / "model.py"
    user.write_text("import json\n\n\ndef forward():\n    return json.loads('{')\n")
    namespace: dict[str, object] = {}
    exec(compile(user.read_text(), str(user), "exec"), namespace)
    with pytest.raises(json.JSONDecodeError) as caught:
        namespace["forward"]()  # type: ignore[operator]
    assert describe_exception(caught.value).endswith("(at model.py:5)")


def test_complex_parameters_are_measured_by_magnitude() -> None:
    class Complex(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(8, 3, dtype=torch.cfloat) * 0.3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x.to(torch.cfloat) @ self.w).abs()

    model = Complex()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns when a complex value is cast to real
        report = nndiag.check(model, input_shape=(8,), num_classes=3, budget=0,
                              probes=["gradients", "precision", "init-loss"])  # fmt: skip
    assert not report.unfinished, [(r.name, r.error) for r in report.unfinished]
    [row] = report.result("gradients").table("parameters").rows
    assert row["weight_norm"] == pytest.approx(
        float(torch.linalg.vector_norm(model.w.detach())), rel=1e-6
    )


def test_a_compiled_model_is_checked_on_its_original_module() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    report = nndiag.check(torch.compile(model), input_shape=(8,), num_classes=3, budget=0,
                          probes=["activations", "precision", "gradients"])  # fmt: skip
    assert not report.unfinished and list(report.findings) == []
    assert any("torch.compile'd model" in n for n in report.notes)


def test_outputs_that_validate_their_fields_are_read_not_rebuilt() -> None:
    """A submodule returning a dataclass that checks its tensors (as PyTorch Geometric's
    SelectOutput does): reading the output's tensors must not rebuild it with placeholders."""
    from dataclasses import dataclass

    @dataclass
    class Selection:
        index: torch.Tensor
        weight: torch.Tensor

        def __post_init__(self) -> None:
            if self.index.dim() != 1:
                raise ValueError("index must be 1-D")

    class Select(nn.Module):
        def forward(self, scores: torch.Tensor) -> Selection:
            return Selection(scores.argmax(dim=1), scores.softmax(dim=1))

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.score, self.select, self.head = nn.Linear(6, 4), Select(), nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.select(self.score(x)).weight)

    batch = (torch.randn(16, 6), torch.randint(0, 3, (16,)))
    report = nndiag.check(Model(), batch=batch, device="cpu", skip=["lr-range", "overfit"])
    assert [r.name for r in report.unfinished] == []
