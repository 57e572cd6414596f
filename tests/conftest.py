"""Shared fixtures: real tokenizers (no network), a hermetic cache dir, and a CLI runner."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")

# Tests never touch the network or the user's caches.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for the session: tokenizers are rebuilt once (Qwen3 ~3 s, SmolLM2 GGUF ~10 s)."""
    d = tmp_path_factory.mktemp("cache")
    os.environ["SPELLING_EXP_CACHE_DIR"] = str(d)
    return d


def make_config(*overrides: str):
    """Compose the real config in-process and return the typed dataclass object."""
    from spelling_exp.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)


@pytest.fixture(scope="session")
def qwen_tokenizer(cache_dir):
    from spelling_exp.tokenizer import build_offline_qwen3_tokenizer

    return build_offline_qwen3_tokenizer(cache_dir)


@pytest.fixture(scope="session")
def smol_tokenizer(cache_dir):
    from spelling_exp.tokenizer import load_tokenizer

    return load_tokenizer(make_config("model=smollm2_135m").model, cache_dir)


def run_cli(*args: str, cache: Path | None = None, timeout: int = 600, env: dict | None = None):
    """Run `python -m spelling_exp ...` for real and return the CompletedProcess."""
    e = dict(os.environ)
    if cache is not None:
        e["SPELLING_EXP_CACHE_DIR"] = str(cache)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "spelling_exp", *args], cwd=ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)
