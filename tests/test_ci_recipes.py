"""docs/ci.md's recipes work as written: their shell steps run, in order, in a fresh virtual
environment (nothing of the development one), installing nndiag from its git repository as the
recipes do. Two substitutions only: this checkout's repository for the placeholder URL, and no
`--index-url` (no network here: the machine's index serves torch's CPU wheel)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLES

YAML = re.compile(r"```yaml\n(.*?)```", re.S)
STEP = re.compile(r"^\s*(?:- run: |- |entry: )((?:pip|nndiag|python) .*)$", re.M)
PLACEHOLDER = '"nndiag @ git+https://github.com/YOUR-ORG/nndiag.git@v0.1.0"'


def recipes() -> list[list[str]]:
    """The shell steps of each YAML recipe of docs/ci.md, in document order."""
    text = (ROOT / "docs" / "ci.md").read_text()
    return [STEP.findall(block) for block in YAML.findall(text) if STEP.search(block)]


def local(step: str) -> str:
    return step.replace(" --index-url https://download.pytorch.org/whl/cpu", "").replace(
        PLACEHOLDER, f'"git+{ROOT.as_uri()}#egg=nndiag"'
    )


def test_the_recipes_are_found() -> None:
    found = recipes()
    assert len(found) == 3, found  # GitHub Actions, GitLab CI, pre-commit
    assert all(any(s.startswith("nndiag check") for s in steps) for steps in found)
    assert all(PLACEHOLDER in s for steps in found[:2] for s in steps if "YOUR-ORG" in s)


@pytest.mark.skipif(shutil.which("git") is None, reason="the recipes install from git")
@pytest.mark.skipif(
    not (ROOT / ".git").exists(), reason="not a git checkout: nothing to install from"
)
def test_every_recipe_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "VIRTUAL_ENV": str(venv), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    env.pop("PYTHONPATH", None)
    work = tmp_path / "repo"
    shutil.copytree(SAMPLES, work / "sample_models")
    done: set[str] = set()  # GitHub's and GitLab's steps are the same: each runs once
    for steps in recipes():
        for step in map(local, steps):
            if step in done:
                continue
            run = subprocess.run(["bash", "-c", step], cwd=work, env=env, capture_output=True,
                                 text=True, timeout=900)  # fmt: skip
            assert run.returncode == 0, (step, run.stdout[-2000:], run.stderr[-2000:])
            done.add(step)
    code = "import nndiag; print(nndiag.__file__)"
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=work, env=env,
                               capture_output=True, text=True, check=True)  # fmt: skip
    assert str(venv) in installed.stdout  # the venv's own copy, not this checkout's
    assert (work / "out.xml").read_text().startswith("<?xml")
    assert (work / "reports" / "findings.csv").exists()
