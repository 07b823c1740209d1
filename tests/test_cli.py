"""CLI behaviour: light startup, exit codes, one-line errors for bad input, exports."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import nndiag
from nndiag.cli import PIPED_WIDTH, app

from conftest import SAMPLES, StrictRunner

runner = StrictRunner()
CHAR_LM = str(SAMPLES / "char_lm.py")


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["check", "--help"],
        ["gradients", "--help"],
        ["explain"],
        ["explain", "dead-units"],
    ],
)
def test_help_does_not_import_torch_or_pandas(args: list[str]) -> None:
    code = textwrap.dedent(f"""
        import sys
        from nndiag.cli import app
        try:
            app({args!r})
        except SystemExit:
            pass
        heavy = sorted(m for m in ("torch", "pandas", "numpy") if m in sys.modules)
        print("HEAVY:" + ",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY:\n" in out.stdout, out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "dead-unit"], "unknown finding code 'dead-unit' (did you mean 'dead-units'?)"),
        (["check", CHAR_LM, "--probe", "gradient"], "unknown probe 'gradient' (did you mean 'gradients'?"),
        (["check", CHAR_LM, "--skip", "lr_range"], "unknown probe 'lr_range' (did you mean 'lr-range'?"),
    ],
)  # fmt: skip
def test_typos_get_one_line_with_the_nearest_name(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "<Code." not in result.stderr


@pytest.mark.parametrize("columns", [70, 120])
def test_help_is_as_wide_as_columns(columns: int) -> None:
    env = {**os.environ, "COLUMNS": str(columns)}
    out = subprocess.run([sys.executable, "-m", "nndiag", "check", "--help"], env=env,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    widest = max(len(line) for line in out.splitlines())
    assert columns - 10 < widest <= columns


def test_import_nndiag_is_light() -> None:
    code = "import sys, nndiag; print('torch' in sys.modules, 'pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_check_char_lm_is_clean_with_62288_parameters() -> None:
    result = runner.invoke(app, ["check", CHAR_LM, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    # The verdict leads the report (stdout); a budget note from a slow machine goes to stderr.
    assert result.stdout.startswith("nndiag: ready to train")
    assert "62,288 parameters" in result.output
    assert "No findings" in result.output


def write(tmp_path: Path, body: str, name: str = "model.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return str(path)


GOOD = textwrap.dedent("""
    import torch
    from torch import nn
    def build_model():
        return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    def make_batch(n):
        return torch.randn(n, 4), torch.randint(0, 3, (n,))
""")

BAD_INPUTS = {
    "missing file": (None, "model file not found"),
    "syntax error": ("def build_model(:\n    pass\n", "syntax error in"),
    "factory raises": (
        "def build_model():\n    raise ValueError('no weights here')\n",
        "ValueError: no weights here",
    ),
    "not a module": ("def build_model():\n    return 42\n", "not an nn.Module"),
    "no factory": ("x = 1\n", "defines no build_model()"),
    "wrong batch shape": (
        GOOD.replace("torch.randn(n, 4)", "torch.randn(n, 5)"),
        "the model rejected the batch",
    ),
    "make_batch raises": (
        GOOD.replace("return torch.randn(n, 4), torch.randint(0, 3, (n,))", "raise KeyError('x')"),
        "make_batch(16) raised KeyError",
    ),
    "batch not a pair": (
        GOOD.replace(
            "return torch.randn(n, 4), torch.randint(0, 3, (n,))", "return torch.randn(n, 4)"
        ),
        "must return (inputs, targets)",
    ),
    "structured targets": (
        GOOD.replace("torch.randint(0, 3, (n,))", "{'labels': torch.randint(0, 3, (n,))}"),
        "define training_step(model, batch) -> loss",
    ),
    "unsupported output": (
        GOOD.replace(
            "return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))", "return Weird()"
        )
        + "\nclass Weird(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.lin = nn.Linear(4, 3)\n    def forward(self, x):\n        return 'text'\n",
        "unsupported model output",
    ),
    "loss not scalar": (
        GOOD + "\ndef loss_fn(out, y):\n    return (out - out).sum(dim=1)\n",
        "loss must be a scalar",
    ),
    "no parameters": (
        GOOD.replace(
            "return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))",
            "return nn.Sequential(nn.ReLU())",
        ),
        "has no parameters",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_gives_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    body, message = BAD_INPUTS[case]
    target = str(tmp_path / "absent.py") if body is None else write(tmp_path, body)
    result = runner.invoke(app, ["check", target, "--device", "cpu"])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nndiag: error:"), result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_raises_usage_error_from_the_api(tmp_path: Path, case: str) -> None:
    body, message = BAD_INPUTS[case]
    target = str(tmp_path / "absent.py") if body is None else write(tmp_path, body)
    with pytest.raises(nndiag.UsageError, match=re.escape(message)):
        nndiag.check(target, device="cpu")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("model.txt", "model.txt is not a Python file"),
        ("no_such_package.models:Net", "no such module: no_such_package.models"),
        ("json", "needs ':attr'"),
        ("collections:OrderedDict", "not an nn.Module"),
        ("bad name!:Net", "neither a .py file nor an importable module name"),
    ],
)
def test_targets_that_are_not_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model.txt").write_text("build_model = None\n")
    result = runner.invoke(app, ["check", target])
    assert result.exit_code == 2 and message in result.stderr, result.output
    with pytest.raises(nndiag.UsageError, match=re.escape(message)):
        nndiag.check(target)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    target = write(tmp_path, "def build_model():\n    raise ValueError('boom')\n")
    result = runner.invoke(app, ["check", target, "--debug"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "boom" in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_absent_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", write(tmp_path, GOOD), "--device", "cuda"])
    assert result.exit_code == 2
    assert "CUDA" in result.stderr


def test_invalid_device_name(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", write(tmp_path, GOOD), "--device", "tpu"])
    assert result.exit_code == 2 and "invalid --device" in result.stderr


def test_factory_and_module_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = GOOD.replace("def build_model", "def make_net")
    path = write(tmp_path, body, name="netmod.py")
    assert runner.invoke(app, ["check", f"{path}:make_net", "-p", "summary"]).exit_code == 0
    monkeypatch.syspath_prepend(str(tmp_path))
    result = runner.invoke(app, ["check", "netmod:make_net", "-p", "summary"])
    assert result.exit_code == 0, result.output
    conflict = runner.invoke(
        app, ["check", "netmod:make_net", "-p", "summary", "--input-shape", "4"]
    )
    assert (
        conflict.exit_code == 2 and "--input-shape describes synthetic batches" in conflict.stderr
    )
    result = runner.invoke(app, ["check", "no_such_module_xyz:build"])
    assert result.exit_code == 2 and "no such module" in result.stderr


@pytest.mark.parametrize(("shape", "classes"), [((1, 28, 28), 2), ((3, 32, 32), 3), ((20,), 3)])
def test_synthetic_labels_are_balanced(shape: tuple[int, ...], classes: int) -> None:
    """No class may win the synthetic rule's argmax for most inputs, or a healthy model checked
    without data would get degenerate-targets from nndiag's own labels (a random output bias
    did that: 98% of 1x28x28 inputs fell in one of 2 classes)."""
    from torch import nn

    from nndiag.core.batches import SyntheticSpec, synthetic_source

    model = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), classes))
    spec = SyntheticSpec(shape, vocab_size=None, num_classes=classes, classify=True, seed=0)
    labels = synthetic_source(model, spec, 512, torch.device("cpu")).draw()[1]
    assert torch.bincount(labels, minlength=classes).max().item() / 512 < 0.7


def test_synthetic_batches_from_options(tmp_path: Path) -> None:
    header = "from torch import nn\ndef build_model():\n    return "
    # A linear model cannot memorise 16 random labels in 12 dimensions: overfit is not the point.
    body = header + "nn.Sequential(nn.Flatten(), nn.Linear(12, 3))\n"
    target = write(tmp_path, body)
    shape = ["--input-shape", "3,4", "--num-classes", "3", "--skip", "overfit"]
    result = runner.invoke(app, ["check", target, *shape])
    assert result.exit_code == 0, result.output
    assert "Tensor[16, 3, 4] float32 -> targets Tensor[16] int64" in result.output
    missing = runner.invoke(app, ["check", target])
    assert missing.exit_code == 2 and "--input-shape" in missing.stderr
    tokens = header + "nn.Sequential(nn.Embedding(50, 8), nn.Flatten(), nn.Linear(40, 50))\n"
    result = runner.invoke(
        app,
        [
            "check",
            write(tmp_path, tokens, "tok.py"),
            "--input-shape",
            "5",
            "--vocab-size",
            "50",
            "--batch-size",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Tensor[4, 5] int64" in result.output


def test_exit_codes_follow_fail_on() -> None:
    constant = str(SAMPLES / "sick_constant_labels.py")  # warnings only
    assert runner.invoke(app, ["check", constant]).exit_code == 0
    assert runner.invoke(app, ["check", constant, "--fail-on", "warning"]).exit_code == 1
    softmax = str(SAMPLES / "sick_double_softmax.py")  # an error
    assert runner.invoke(app, ["check", softmax]).exit_code == 1
    assert runner.invoke(app, ["check", softmax, "--fail-on", "never"]).exit_code == 0


def probe_lines(output: str) -> list[str]:
    lines = output.splitlines()
    start = lines.index("Probes") + 1
    return [
        line.split()[0]
        for line in lines[start:]
        if line[:1].isalpha() and not line.startswith(("note", "Tables"))
    ]


def test_probe_selection_and_skip() -> None:
    only = runner.invoke(app, ["check", CHAR_LM, "-p", "data", "-p", "summary"])
    assert probe_lines(only.output) == ["summary", "data"]
    skipped = runner.invoke(
        app, ["check", CHAR_LM, "--skip", "gradients", "--skip", "lr-range", "--skip", "overfit"]
    )
    assert "gradients" not in probe_lines(skipped.output) and "activations" in probe_lines(
        skipped.output
    )
    single = runner.invoke(app, ["gradients", CHAR_LM])
    assert probe_lines(single.output) == ["gradients"]
    none = runner.invoke(app, ["check", CHAR_LM, "-p", "data", "--skip", "data"])
    assert none.exit_code == 2 and "no probe selected" in none.stderr


def test_json_and_csv_exports(tmp_path: Path) -> None:
    out_json, out_csv = tmp_path / "r" / "report.json", tmp_path / "csv"
    exports = ["--json", str(out_json), "--csv", str(out_csv)]
    result = runner.invoke(
        app,
        ["check", str(SAMPLES / "sick_frozen.py"), "--skip", "overfit", *exports],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    assert {"model", "probes", "findings"} <= set(data)
    assert [p["name"] for p in data["probes"]] == [
        "summary", "data", "structure", "init-loss", "gradients", "activations", "jacobian",
        "dependencies", "precision", "lr-range",
    ]  # fmt: skip
    assert data["findings"][0]["code"] == "frozen-parameters"
    files = sorted(p.name for p in out_csv.iterdir())
    assert "findings.csv" in files and "gradients-parameters.csv" in files
    assert "summary-modules.csv" in files and "data-tensors.csv" in files
    import pandas as pd

    grads = pd.read_csv(out_csv / "gradients-parameters.csv")
    assert {"parameter", "grad_norm", "weight_norm", "ratio", "update_ratio"} <= set(grads.columns)
    assert not grads["trainable"].iloc[0]  # the frozen first layer
    curve = pd.read_csv(out_csv / "lr-range-curve.csv")
    assert {"lr", "loss", "trend"} <= set(curve.columns) and len(curve) > 10
    blocks = pd.read_csv(out_csv / "jacobian-blocks.csv")
    assert {"block", "grad_norm", "gain"} <= set(blocks.columns)


def test_exports_follow_the_umask_and_create_missing_folders(tmp_path: Path) -> None:
    import os

    previous = os.umask(0o022)
    try:
        json_path, csv_dir = tmp_path / "new" / "r.json", tmp_path / "csv"
        result = runner.invoke(app, ["check", CHAR_LM, "-p", "data", "--json", str(json_path),
                                     "--csv", str(csv_dir), "--junit", str(tmp_path / "j.xml")])  # fmt: skip
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    for path in (json_path, tmp_path / "j.xml", *csv_dir.iterdir()):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_json_dash_goes_to_stdout_alone(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", CHAR_LM, "-p", "data", "--json", "-"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["probes"][0]["name"] == "data"
    assert "nndiag:" in result.stderr  # the verdict is still shown, on stderr
    assert not (tmp_path / "-").exists() and not Path("-").exists()


def test_unwritable_export_fails_before_probes(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["check", CHAR_LM, "--csv", str(blocker / "sub")])
    assert result.exit_code == 2 and "cannot write to" in result.stderr
    assert "summary" not in result.stdout


def test_quiet_prints_only_findings() -> None:
    result = runner.invoke(app, ["check", str(SAMPLES / "sick_frozen.py"), "-q"])
    assert "frozen-parameters" in result.output and "summary" not in result.output
    assert "\x1b" not in result.output  # not a TTY: no control characters


def test_piped_output_is_wide_enough_for_the_tables(monkeypatch: pytest.MonkeyPatch) -> None:
    # Rich would assume 80 columns off a terminal and fold the headers ("update_r atio").
    monkeypatch.delenv("COLUMNS", raising=False)
    result = runner.invoke(app, ["check", CHAR_LM, "--probe", "gradients", "--details"])
    lines = result.output.splitlines()
    assert " update_ratio " in result.output
    assert 90 < max(len(line) for line in lines) <= PIPED_WIDTH
    monkeypatch.setenv("COLUMNS", "90")  # the user's choice wins
    result = runner.invoke(app, ["check", CHAR_LM, "--probe", "gradients", "--details"])
    assert max(len(line) for line in result.output.splitlines()) <= 90


# Each command's arguments, and a function inside it made to raise ("module:Owner.attribute"):
# a crash anywhere must fail a test.
CRASHES = {
    "check": (["check", CHAR_LM, "--probe", "summary"], "nndiag.cli:check_here"),
    "gradients": (["gradients", CHAR_LM], "nndiag.cli:check_here"),  # a probe's own command
    "report": (["report", "{report}"], "nndiag.running:Outputs.emit"),
    "diff": (["diff", "{report}", "{report}"], "nndiag.diff:compare"),
    "explain": (["explain", "dead-units"], "nndiag.codes:page"),
}


@pytest.mark.parametrize("command", sorted(CRASHES))
def test_a_crash_is_not_an_exit_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, command: str
) -> None:
    """Typer reports an uncaught exception as exit 1; the suite's runner raises it instead, so
    "a sick model exits 1" can never pass on a crash, whichever command crashes."""
    import importlib

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    args, where = CRASHES[command]
    module, _, path = where.partition(":")
    *owners, attribute = path.split(".")
    owner: object = importlib.import_module(module)
    for name in owners:
        owner = getattr(owner, name)
    monkeypatch.setattr(owner, attribute, broken)
    report = tmp_path / "r.json"
    report.write_text(nndiag.check(CHAR_LM, probes=["summary"]).to_json())
    with pytest.raises(RuntimeError, match="boom"):
        runner.invoke(app, [a.format(report=report) for a in args])
