"""Inference backends behind one small interface; each owns its tokenizer and model.

A backend is built from the model config, the generation settings and an optional LoRA
adapter. It renders questions into the model's chat format (through ``model.chat``, the one
place prompts are rendered), counts prompt tokens (for the batch plan), and turns prompts into
replies. Weights load on the first ``generate``, so a fully resumed or cached evaluation never
loads them. Question building, parsing and metrics never see which backend ran.

Backends: ``hf`` (transformers generate), ``openai`` (any OpenAI-compatible server, sent the
exact prompt text rendered here), ``llamacpp`` (a local llama.cpp server on the GGUF, queried
as ``openai``), ``vllm`` (vLLM's offline engine with a LoRARequest). ``close()`` releases what a
backend started (a server, a pool); the recipe calls it on success, errors and signals.

A backend is one module, named in ``BACKENDS``, that owns everything about it:

- ``SETTINGS``: the ``EvalConfig`` fields it reads (its settings dataclass, e.g. ``"vllm"`` for
  ``eval.vllm``, or a plain field such as ``"merge_adapter"``); config.py holds their defaults.
- ``NOT_IN_IDENTITY``: ``{"vllm.field": why}`` for each of those settings that cannot change a
  reply; every other one must enter the evaluation's cache key (tests/test_backends.py checks).
- ``identity(eval_cfg) -> dict``: its settings that can change a reply, for the cache key.
- ``check(eval_cfg, model, evaluates_adapter)``: what can be checked up front, before any stage,
  with no server, no weights and no heavy import (the module imports torch & co. in functions).
- ``build(eval_cfg, model, adapter, cache_dir, work_dir)``: the backend object.
- ``served_model(eval_cfg, adapter)``, optional: the model name a server is asked for.

So a new backend is its module, one line in ``BACKENDS``, its value in config.py's
``EvalBackend`` and, if it has settings, their dataclass on ``EvalConfig``. Modules are imported
only when used, so checking one backend never imports the others.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from spelling_exp.config import EvalBackend, EvalConfig, ModelConfig
from spelling_exp.errors import ConfigError


@dataclass(frozen=True)
class Reply:
    text: str  # special tokens stripped
    truncated: bool  # generation hit max_new_tokens before the end-of-turn token


class GenerationBackend(Protocol):
    name: str

    def render(self, user_prompts: Sequence[str]) -> list[str]:
        """Chat-formatted prompt text for each user turn (Qwen3: thinking off, checked)."""
        ...

    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        """Token counts of rendered prompts, used to group prompts of similar length into batches."""
        ...

    def generate(self, prompts: Sequence[str], seed: int) -> list[list[Reply]]:
        """For each prompt, ``n_samples`` replies, each saying whether it was cut off. Same seed, same replies."""
        ...

    def close(self) -> None:
        """Stop what the backend started (idempotent)."""
        ...


BACKENDS: dict[EvalBackend, str] = {
    EvalBackend.hf: "spelling_exp.evaluation.backends.hf",
    EvalBackend.openai: "spelling_exp.evaluation.backends.openai_server",
    EvalBackend.llamacpp: "spelling_exp.evaluation.backends.llamacpp",
    EvalBackend.vllm: "spelling_exp.evaluation.backends.vllm",
}


def backend_module(name: str) -> ModuleType:
    """The module of backend ``name``; an unknown name is an error, never a fallback."""
    if name not in BACKENDS:
        raise ConfigError(f"eval.backend={name}: no such backend; choose one of {', '.join(BACKENDS)}")
    return importlib.import_module(BACKENDS[EvalBackend(name)])


def backend_settings(eval_cfg: EvalConfig) -> dict[str, Any]:
    """The backend's own settings that can change a reply, for the evaluation's identity (cache key).
    Empty for ``hf``, whose one setting (eval.merge_adapter) the recipe keys beside the adapter."""
    return backend_module(eval_cfg.backend).identity(eval_cfg)


def served_model(eval_cfg: EvalConfig, adapter: str | None) -> str | None:
    """The model name a server backend asks its server for (None for backends that load the weights)."""
    served = getattr(backend_module(eval_cfg.backend), "served_model", None)
    return served(eval_cfg, adapter) if served else None


def make_backend(eval_cfg: EvalConfig, model: ModelConfig, adapter: str | None, cache_dir: str,
                 work_dir: Path | None = None) -> Any:
    """The configured backend for ``model`` (+ ``adapter``), generating as ``eval_cfg`` says.
    ``work_dir``: where a backend may write its own files (a server log), outside any cache entry."""
    return backend_module(eval_cfg.backend).build(eval_cfg, model, adapter, cache_dir, work_dir)


def validate_backend_config(eval_cfg: EvalConfig, model: ModelConfig, evaluates_adapter: bool) -> None:
    """Checks that need no server, weights or heavy import: run by the CLI before any stage."""
    backend_module(eval_cfg.backend).check(eval_cfg, model, evaluates_adapter)


def installed(dist: str) -> str | None:
    """The installed version of ``dist`` (None: not installed), for identities that depend on it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
