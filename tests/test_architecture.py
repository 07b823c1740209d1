"""A probe plugin registered through the `nndiag.probes` entry point runs like a built-in, and two
checks in two threads with different settings never see each other's settings."""

from __future__ import annotations

import re
import sys
import threading
import types
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

import nndiag
import nndiag.probes as probes

from conftest import ROOT, SAMPLES


@pytest.fixture
def weight_norms_plugin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The worked example of docs/architecture.md, installed as `my_probes.weight_norms`."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    (source,) = re.findall(r"```python\n# my_probes/weight_norms.py\n(.*?)```", text, re.S)
    module = types.ModuleType("my_probes.weight_norms")
    monkeypatch.setitem(sys.modules, "my_probes", types.ModuleType("my_probes"))
    monkeypatch.setitem(sys.modules, "my_probes.weight_norms", module)
    exec(compile(source, "weight_norms.py", "exec"), module.__dict__)
    point = EntryPoint("weight-norms", "my_probes.weight_norms:SPEC", probes.ENTRY_POINT_GROUP)
    monkeypatch.setattr(probes, "entry_points", lambda group: [point])
    probes.spec.cache_clear()
    yield
    probes.spec.cache_clear()


def test_a_plugin_probe_runs_with_its_own_code_and_settings(weight_norms_plugin: None) -> None:
    assert "weight-norms" in probes.probe_names()
    target = str(SAMPLES / "mlp.py")
    quiet = nndiag.check(target, probes=["weight-norms"], device="cpu")
    assert list(quiet.findings) == []
    strict = nndiag.check(
        target, probes=["weight-norms"], device="cpu", settings={"weight-norms": {"norm_max": 0.1}}
    )
    assert {f.code for f in strict.findings} == {"huge-weights"}
    assert strict.result("weight-norms").metrics["largest"] > 0.1


def test_a_plugin_is_explained_and_documented_from_its_own_catalogue(
    weight_norms_plugin: None, tmp_path: Path
) -> None:
    """`nndiag explain` lists and pages a plugin's own code; `python -m nndiag.docgen --plugin`
    writes the plugin page's settings and codes blocks from its spec."""
    from typer.testing import CliRunner

    from nndiag import docgen
    from nndiag.cli import app

    listed = CliRunner().invoke(app, ["explain"], env={"COLUMNS": "200"})
    assert "huge-weights" in listed.output and "weight-norms" in listed.output
    page = CliRunner().invoke(app, ["explain", "huge-weights"], env={"COLUMNS": "200"})
    assert page.exit_code == 0 and "a weight tensor with a huge norm" in page.output
    doc = tmp_path / "weight-norms.md"
    markers = "<!-- generated:{0} -->\nold\n<!-- end:{0} -->\n"
    doc.write_text("# weight-norms\n" + markers.format("settings") + markers.format("codes"))
    assert docgen.main(["--plugin", "weight-norms", str(doc)]) == 0
    written = doc.read_text()
    assert "| `norm_max` |" in written and "| `huge-weights` | warning |" in written
    assert "old" not in written


def test_two_checks_in_two_threads_keep_their_own_settings() -> None:
    target = str(SAMPLES / "mlp.py")
    results: dict[str, object] = {}

    def run(name: str, dead_max: float) -> None:
        report = nndiag.check(
            target, probes=["activations"], device="cpu",
            settings={"activations": {"dead_fraction_max": dead_max}},
        )  # fmt: skip
        results[name] = report.settings["activations"]["dead_fraction_max"]

    threads = [threading.Thread(target=run, args=(n, v)) for n, v in (("a", 0.1), ("b", 0.9))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"a": 0.1, "b": 0.9}


def test_a_plugin_code_is_explained_and_listed(weight_norms_plugin: None) -> None:
    from nndiag.cli import app

    from conftest import StrictRunner

    runner = StrictRunner()
    listed = runner.invoke(app, ["explain"])
    assert listed.exit_code == 0 and "huge-weights" in listed.output
    page = runner.invoke(app, ["explain", "huge-weights"])
    assert page.exit_code == 0 and "a weight tensor with a huge norm" in page.output
    assert "Re-init it." in page.output


def test_a_probe_that_needs_a_provision_runs_after_its_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import dataclasses

    from nndiag.errors import OptionError
    from nndiag.probes.provisions import InitLoss

    early = dataclasses.replace(probes.spec("summary"), needs=(InitLoss,))
    monkeypatch.setattr(probes, "spec", lambda name: early if name == "summary" else SPEC_OF(name))
    with pytest.raises(OptionError, match="runs before the probe that provides"):
        probes.registry()


SPEC_OF = probes.spec


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The nndiag modules a file imports (a TYPE_CHECKING block does not count)."""
    import ast

    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if top_level_only and isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            continue
        for n in ast.walk(node):
            if (
                isinstance(n, ast.ImportFrom)
                and n.level == 0
                and (n.module or "").startswith("nndiag")
            ):
                found.add(str(n.module))
                found.update(f"{n.module}.{a.name}" for a in n.names)
            elif isinstance(n, ast.Import):
                found.update(a.name for a in n.names if a.name.startswith("nndiag"))
    return found


def _graph(top_level_only: bool) -> dict[str, set[str]]:
    package = ROOT / "nndiag"
    modules = {
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
        for p in package.rglob("*.py")
    }
    return {
        name: {m for m in _imports(path, top_level_only) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_no_import_circle_at_module_level() -> None:
    """Modules import each other one way at load time (imports deferred into functions, which
    keep `nndiag --help` light, are checked pair by pair below)."""
    import graphlib

    graphlib.TopologicalSorter(_graph(top_level_only=True)).prepare()  # raises CycleError


def test_the_entry_layer_has_no_circle() -> None:
    """cli and isolation both sit on running.py; neither imports the other back."""
    graph = _graph(top_level_only=False)
    assert "nndiag.cli" not in graph["nndiag.isolation"]
    assert "nndiag.cli" not in graph["nndiag.running"]
    assert "nndiag.isolation" not in graph["nndiag.running"]


def test_every_alias_a_probe_declares_is_a_flag_of_check_and_names_a_setting() -> None:
    """A probe declares its aliases (ProbeSpec.aliases); the CLI's flags are static, so a new
    alias without its flag in cli.check, or naming a setting its probe lacks, fails here."""
    import dataclasses
    import inspect

    from nndiag import cli
    from nndiag.probes import spec
    from nndiag.settings import alias_table

    flags = set(inspect.signature(cli.check).parameters)
    for alias, (probe, setting) in alias_table().items():
        assert alias in flags, f"{probe}'s alias {alias!r} has no --{alias.replace('_', '-')}"
        assert setting in {f.name for f in dataclasses.fields(spec(probe).config)}, alias


NEW_PROBE = """
import dataclasses

from nndiag.probes.activations import SPEC as ACTIVATIONS

SPEC = dataclasses.replace(ACTIVATIONS, name="weight-norms", raises=("dead-units",),
                           aliases={"norm_max": "dead_fraction_max"}, order=65)
"""


@pytest.fixture
def planted_probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A newcomer's one new module, `weight_norms.py`, found where nndiag's probes live."""
    (tmp_path / "weight_norms.py").write_text(NEW_PROBE)
    monkeypatch.setattr(probes, "__path__", [*probes.__path__, str(tmp_path)])
    probes._builtin_specs.cache_clear()
    probes.spec.cache_clear()
    yield tmp_path
    sys.modules.pop("nndiag.probes.weight_norms", None)
    probes._builtin_specs.cache_clear()
    probes.spec.cache_clear()


def test_a_new_builtin_probe_is_one_module(planted_probe: Path, tmp_path: Path) -> None:
    """The module alone puts the probe in the run order, the catalogue's "raised by", the
    generated docs, the alias table, and the CLI: its own command and its alias as a flag."""
    import json
    import subprocess

    from nndiag import docgen
    from nndiag.settings import alias_table

    names = probes.builtin()
    assert names.index("activations") < names.index("weight-norms") < names.index("jacobian")
    assert probes.raised_by("dead-units") == ("activations", "weight-norms")
    assert "| activations, weight-norms |" in docgen.catalogue_table()
    assert "dead-units" in docgen.codes_table("weight-norms")
    assert ROOT / "docs" / "probes" / "weight-norms.md" in docgen.blocks()
    assert alias_table()["norm_max"] == ("weight-norms", "dead_fraction_max")

    # The CLI builds its commands and flags at import: a fresh process sees the planted module.
    report = tmp_path / "report.json"
    script = (
        "import sys, nndiag.probes as p; p.__path__.append(sys.argv[1]); from nndiag.cli import run; "
        "sys.argv = ['nndiag', *sys.argv[2:]]; run()"
    )
    run = lambda *args: subprocess.run([sys.executable, "-c", script, str(planted_probe), *args],
                                       capture_output=True, text=True, cwd=ROOT, timeout=300)  # fmt: skip
    help_text = run("check", "--help").stdout
    assert "--norm-max" in help_text and "weight-norms: " in help_text
    done = run("weight-norms", str(SAMPLES / "mlp.py"), "--norm-max", "0.25", "--json", str(report))
    assert done.returncode in (0, 1), done.stderr
    saved = json.loads(report.read_text())
    assert [r["name"] for r in saved["probes"]] == ["weight-norms"]
    assert saved["settings"]["weight-norms"]["dead_fraction_max"] == 0.25


def test_the_integrations_default_to_the_quick_probes() -> None:
    """ProbeSpec.quick decides the callbacks' default set: a new quick probe joins it."""
    import inspect

    from nndiag.integrations.huggingface import NndiagTrainerCallback
    from nndiag.integrations.lightning import NndiagCallback
    from nndiag.probes import builtin, spec

    quick = tuple(n for n in builtin() if spec(n).quick)
    assert "gradients" in quick and "overfit" not in quick
    assert not any(spec(n).trains for n in quick)  # quick: nothing trains a copy
    for callback in (NndiagTrainerCallback, NndiagCallback):
        assert inspect.signature(callback.__init__).parameters["probes"].default == quick


def test_no_function_above_cyclomatic_complexity_15() -> None:
    """radon's count (branches, loops, boolean operators, comprehensions' conditions): a
    function above 15 is split into named steps a newcomer can read one at a time."""
    from pathlib import Path

    from radon.complexity import cc_visit

    package = Path(nndiag.__file__).parent
    too_complex = [
        f"{path.relative_to(package)}:{block.lineno} {block.name} ({block.complexity})"
        for path in sorted(package.rglob("*.py"))
        for block in cc_visit(path.read_text(encoding="utf-8"))
        if block.complexity > 15
    ]
    assert not too_complex, too_complex


def test_the_module_map_names_every_module() -> None:
    """docs/architecture.md's map is a newcomer's first page: a module missing from it drifts."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    map_ = text.split("## Module map", 1)[1].split("## ", 1)[0]
    package = Path(nndiag.__file__).parent
    modules = [p for p in [*package.glob("*.py"), *(package / "core").glob("*.py")]
               if p.name != "__init__.py"]  # fmt: skip
    missing = [str(p.relative_to(package)) for p in modules if p.name not in map_]
    assert not missing, f"add to the module map: {missing}"
