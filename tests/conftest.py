"""Shared fixtures: real tokenizers (no network) and a hermetic cache dir. Helpers: tests/helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import make_config

# Tests never touch the network or the user's caches.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One cache for the session: tokenizers are rebuilt once (Qwen3 ~3 s, SmolLM2 GGUF ~10 s)."""
    d = tmp_path_factory.mktemp("cache")
    os.environ["SPELLING_EXP_CACHE_DIR"] = str(d)
    return d


@pytest.fixture(scope="session")
def qwen_tokenizer(cache_dir):
    from spelling_exp.model.tokenizer import build_offline_qwen3_tokenizer

    return build_offline_qwen3_tokenizer(cache_dir)


@pytest.fixture(scope="session")
def smol_tokenizer(cache_dir):
    from spelling_exp.model.tokenizer import load_tokenizer

    return load_tokenizer(make_config("model=smollm2_135m").model, cache_dir)
