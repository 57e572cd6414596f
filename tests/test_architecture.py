"""The layering is enforced, not a convention: import-linter's contracts (pyproject.toml) hold,
and they do catch an upward import."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import ROOT

LINT = str(Path(sys.executable).parent / "lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # analyse the tree at `root`, not the installed one
    return subprocess.run([LINT, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_import_contracts_hold():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "Contracts: 2 kept, 0 broken." in r.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    shutil.copytree(ROOT / "spelling_exp", tmp_path / "spelling_exp", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    recipe = tmp_path / "spelling_exp" / "evaluation" / "recipe.py"
    recipe.write_text(recipe.read_text() + "\nfrom spelling_exp.stages.data import run_data_stage  # noqa\n")
    r = _lint(tmp_path)
    assert r.returncode != 0
    assert "spelling_exp.evaluation.recipe -> spelling_exp.stages.data" in r.stdout
