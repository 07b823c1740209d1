"""Docs stay in step with the code: every code has its page, every probe setting is in the
generated tables, values quoted in prose match the defaults, and every example runs."""

from __future__ import annotations

import dataclasses
import inspect
import re
import shlex
import shutil
from pathlib import Path

import pytest

from nndiag import docgen
from nndiag.cli import app
from nndiag.codes import page
from nndiag.findings import CATALOG
from nndiag.integrations.pytest_plugin import checker
from nndiag.probes import builtin, raised_by, spec

from conftest import ROOT, StrictRunner

DOCS = ROOT / "docs"


def test_generated_blocks_are_current() -> None:
    assert not docgen.stale(), "run `python -m nndiag.docgen` and commit the pages"


@pytest.mark.parametrize("code", list(CATALOG))
def test_every_code_has_a_page_headed_by_the_catalogue(code: str) -> None:
    """The page is written once (nndiag/codes/<code>.md); its severity and the probes that raise
    it come from the catalogue and the specs, and some probe raises every code."""
    probes = raised_by(code)
    assert probes, f"no probe declares {code} in its ProbeSpec.raises"
    text = page(code, CATALOG[code], probes)
    assert text.startswith(
        f"# `{code}`\n\n**Severity:** {CATALOG[code].severity} · **raised by:** "
    )
    assert "**Severity:**" not in (ROOT / "nndiag" / "codes" / f"{code}.md").read_text()


@pytest.mark.parametrize("name", builtin())
def test_values_quoted_in_a_probe_page_are_the_defaults(name: str) -> None:
    """Prose may quote a setting as `key` = value; the value must be the Config's default."""
    text = (DOCS / "probes" / f"{name}.md").read_text()
    defaults = {f.name: f.default for f in dataclasses.fields(spec(name).config)}
    quoted = re.findall(r"`([a-z_]+)` = ([-+0-9.e]+)", text)
    for key, value in quoted:
        assert key in defaults, f"{name}.md quotes `{key}`, which is not a setting"
        assert float(value) == pytest.approx(float(defaults[key])), (key, value, defaults[key])


@pytest.mark.parametrize("name", builtin())
def test_no_probe_page_names_a_retired_constant(name: str) -> None:
    text = (DOCS / "probes" / f"{name}.md").read_text()
    assert not re.findall(r"`[A-Z][A-Z0-9]*_[A-Z0-9_]+`", text)


CODE_PAGES = sorted((ROOT / "nndiag" / "codes").glob("*.md"))


@pytest.mark.parametrize("path", CODE_PAGES, ids=lambda p: p.stem)
def test_code_pages_quote_current_settings_at_their_defaults(path: Path) -> None:
    """A code's page (what `nndiag explain` prints) names settings as `probe.key`, never a
    retired constant, and any value it quotes is the setting's default."""
    text = path.read_text()
    assert not re.findall(r"`[A-Z][A-Z0-9]*_[A-Z0-9_]+`", text), "a retired constant name"
    for probe, key, value in re.findall(r"`([a-z-]+)\.([a-z_]+)` = ([-+0-9.e]+[0-9])", text):
        defaults = {f.name: f.default for f in dataclasses.fields(spec(probe).config)}
        assert key in defaults, f"{path.name} quotes {probe}.{key}, which is not a setting"
        assert float(value) == pytest.approx(float(defaults[key])), (key, value, defaults[key])


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
    named blocks are written to their file, other Python blocks run in one namespace per page
    (and their test_ functions are called), and every `nndiag` command must exit 0 or 1 (2
    would be a broken example)."""
    shutil.copytree(ROOT / "sample_models", tmp_path / "sample_models")
    (tmp_path / "my_model.py").write_text(readme_model())
    monkeypatch.chdir(tmp_path)
    runner = StrictRunner()
    ran = 0
    namespace: dict[str, object] = {"__name__": "doc_example"}  # a page reads like a notebook
    for lang, body in FENCE.findall(doc.read_text()):
        first = body.splitlines()[0] if body else ""
        named = NAMED.match(first)
        if named:
            (tmp_path / named.group(1)).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / named.group(1)).write_text(body)
        # A named module is only written; a named pytest file, like an unnamed block, runs.
        if lang == "python" and (not named or Path(named.group(1)).name.startswith("test_")):
            exec(compile(body, f"{doc.name} example", "exec"), namespace)
            fixtures = {"nndiag_check": checker()}
            for name, fn in list(namespace.items()):
                if name.startswith("test_") and callable(fn):
                    wanted = inspect.signature(fn).parameters
                    fn(**{k: fixtures[k] for k in wanted})
            ran += 1
        for args in nndiag_commands(body):
            result = runner.invoke(app, args)
            assert result.exit_code in (0, 1), (args, result.output, result.exception)
            ran += 1
    examples = [  # a named module is only written (tests/test_architecture.py runs the plugin)
        lang
        for lang, body in FENCE.findall(doc.read_text())
        if lang in ("bash", "python") and not NAMED.match(body.partition("\n")[0])
    ]
    assert ran or not examples, f"{doc} has examples but none ran"
