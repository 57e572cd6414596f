"""A plain (non-editable) install of the built wheel has a working CLI: conf/ ships inside it."""
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import ROOT, run_cli

pytestmark = pytest.mark.slow  # builds a wheel (~10 s)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the built wheel; the dependencies come from this venv, read-only.

    (``venv --system-site-packages`` would expose the base interpreter's packages, not this venv's,
    so a .pth file points at this venv's site-packages instead. Its own .pth files, among them the
    editable install's finder, are not processed from there, so the wheel is what gets imported.)
    """
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    for name in ("spelling_exp", "conf", "hydra_plugins"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp / "dist"), str(src)], check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("spelling_exp-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(venv), "platbase": str(venv)}))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv / "bin" / "python"


def test_wheel_ships_conf_and_cli_works_from_another_directory(installed, tmp_path):
    where = subprocess.run([str(installed), "-c", "import spelling_exp; print(spelling_exp.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert str(installed.parents[1]) in where.stdout and str(ROOT) not in where.stdout
    plugin = subprocess.run([str(installed), "-c", "import hydra_plugins.spelling_exp_ray as p; print(p.__file__)"],
                            cwd=tmp_path, capture_output=True, text=True)  # hydra/launcher=ray's Hydra plugin
    assert plugin.returncode == 0 and str(installed.parents[1]) in plugin.stdout, plugin.stderr
    r = run_cli("--help", cwd=tmp_path, python=str(installed))
    assert r.returncode == 0, r.stderr
    presets = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    assert len(presets) >= 6 and f"experiment: {', '.join(presets)}" in r.stdout  # every preset shipped
    r = run_cli("--cfg", "job", "+experiment=spelling_lora", cwd=tmp_path, python=str(installed))
    assert r.returncode == 0, r.stderr
    assert "experiment_name: spelling_lora" in r.stdout and "family: qwen3" in r.stdout


def test_setup_vllm_refuses_a_driver_older_than_its_cuda_build(tmp_path):
    """Mocked: nvidia-smi (no GPU here), a stand-in that reports driver 550; vLLM 0.33 needs >= 580."""
    import os
    import subprocess

    from helpers import ROOT

    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 550.54.15\n")
    smi.chmod(0o755)
    r = subprocess.run(["bash", str(ROOT / "scripts" / "setup.sh"), "--vllm"], cwd=tmp_path, capture_output=True,
                       text=True, env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}, timeout=60)
    assert r.returncode == 2 and "driver 550.54.15 is older than 580" in r.stderr
    assert not (tmp_path / ".venv-vllm").exists()
