"""Docs stay in step with the code: every finding code and every named threshold is documented."""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nndiag.cli import app
from nndiag.findings import CATALOG, Code
from nndiag.probes import PROBE_MODULES, ProbeName

from conftest import ROOT

DOCS = ROOT / "docs"


def test_every_code_is_in_the_catalog_and_documented() -> None:
    text = (DOCS / "findings.md").read_text()
    assert set(CATALOG) == set(Code)
    for code in Code:
        assert f"`{code.value}`" in text, code


@pytest.mark.parametrize("name", list(PROBE_MODULES), ids=lambda p: p.value)
def test_every_threshold_constant_is_documented(name: ProbeName) -> None:
    module = importlib.import_module(PROBE_MODULES[name])
    page = (DOCS / "probes" / f"{name.value}.md").read_text()
    constants = [
        k
        for k, v in vars(module).items()
        if k.isupper() and not k.startswith("_") and isinstance(v, (int, float)) and k != "NAME"
    ]
    missing = [k for k in constants if k not in page]
    assert not missing, f"docs/probes/{name.value}.md does not document {missing}"


# ---- every command and Python example in the docs runs ------------------------------------------

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
NAMED = re.compile(r"^# ([\w./-]+\.\w+)$")  # a block whose first line names its file
COMMAND_PREFIXES = ("- run: ", "run: ", "entry: ", "- ", "$ ")
DOC_FILES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def nndiag_commands(body: str) -> list[list[str]]:
    commands = []
    for line in body.splitlines():
        text = line.strip()
        for prefix in COMMAND_PREFIXES:
            text = text.removeprefix(prefix)
        if text.startswith("nndiag "):
            commands.append(shlex.split(text, comments=True)[1:])
    return commands


def readme_model() -> str:
    for _lang, body in FENCE.findall((ROOT / "README.md").read_text()):
        if body.startswith("# my_model.py\n"):
            return body
    raise AssertionError("README lost its my_model.py example")


@pytest.mark.parametrize("doc", DOC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_doc_examples_run(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a scratch folder with the samples and the README's my_model.py, in document order:
    named blocks are written to their file, other Python blocks run (and their test_ functions
    are called), and every `nndiag` command must exit 0 or 1 (2 would be a broken example)."""
    shutil.copytree(ROOT / "sample_models", tmp_path / "sample_models")
    (tmp_path / "my_model.py").write_text(readme_model())
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    ran = 0
    for lang, body in FENCE.findall(doc.read_text()):
        first = body.splitlines()[0] if body else ""
        named = NAMED.match(first)
        if named:
            (tmp_path / named.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / named.group(1)).write_text(body)
        # A named module is only written; a named pytest file, like an unnamed block, runs.
        if lang == "python" and (not named or Path(named.group(1)).name.startswith("test_")):
            namespace: dict[str, object] = {"__name__": "doc_example"}
            exec(compile(body, f"{doc.name} example", "exec"), namespace)
            for name, fn in list(namespace.items()):
                if name.startswith("test_") and callable(fn):
                    fn()
            ran += 1
        for args in nndiag_commands(body):
            result = runner.invoke(app, args)
            assert result.exit_code in (0, 1), (args, result.output, result.exception)
            ran += 1
    examples = [lang for lang, _ in FENCE.findall(doc.read_text()) if lang in ("bash", "python")]
    assert ran or not examples, f"{doc} has examples but none ran"
