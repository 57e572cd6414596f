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
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from spelling_exp.config import EvalBackend, EvalConfig, ModelConfig


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
    EvalBackend.hf: "spelling_exp.evaluation.backends.hf:HFBackend",
    EvalBackend.openai: "spelling_exp.evaluation.backends.openai_server:OpenAIBackend",
    EvalBackend.llamacpp: "spelling_exp.evaluation.backends.llamacpp:LlamaCppBackend",
    EvalBackend.vllm: "spelling_exp.evaluation.backends.vllm:VllmBackend",
}


def backend_settings(eval_cfg: EvalConfig) -> dict[str, Any]:
    """The backend's own settings that can change a reply, for the evaluation's identity (cache key).

    A server's weights cannot be fingerprinted from here: for ``openai`` the identity is its URL
    (the served model name is the adapter's analogue and is recorded apart); the cache trusts a
    server to serve the same weights under the same name (eval.use_cache=false otherwise).
    llama.cpp's slot and batch sizes are included: its greedy replies were batch-invariant when
    measured (80 of 80 identical at 16 and 32 requests per round), but no kernel promises it.
    """
    from importlib.metadata import PackageNotFoundError, version

    def installed(dist: str) -> str | None:
        try:
            return version(dist)
        except PackageNotFoundError:
            return None

    e = eval_cfg
    if e.backend == EvalBackend.openai:
        return {"base_url": e.openai.base_url}
    if e.backend == EvalBackend.llamacpp:
        s = e.llamacpp
        return {"gguf": s.gguf, "xllamacpp": installed("xllamacpp"), "parallel": s.parallel,
                "ctx_per_slot": s.ctx_per_slot, "batch": s.batch, "ubatch": s.ubatch}
    if e.backend == EvalBackend.vllm:
        return {"vllm": installed("vllm"), "max_model_len": e.vllm.max_model_len}
    return {}


def served_model(eval_cfg: EvalConfig, adapter: str | None) -> str | None:
    """The model name an ``openai`` evaluation asks the server for (None for other backends)."""
    if eval_cfg.backend != EvalBackend.openai:
        return None
    return eval_cfg.openai.adapter_model if adapter else eval_cfg.openai.model


def make_backend(eval_cfg: EvalConfig, model: ModelConfig, adapter: str | None, cache_dir: str,
                 work_dir: Path | None = None) -> Any:
    """The configured backend for ``model`` (+ ``adapter``), generating as ``eval_cfg`` says.
    ``work_dir``: where a backend may write its own files (a server log), outside any cache entry."""
    e = eval_cfg
    module, _, cls = BACKENDS[e.backend].partition(":")
    common = {"sampling": e.sampling, "max_new_tokens": e.max_new_tokens, "n_samples": e.n_samples,
              "adapter": adapter, "cache_dir": cache_dir}
    own: dict[str, Any] = {
        EvalBackend.hf: {"merge_adapter": e.merge_adapter},
        EvalBackend.openai: {"settings": e.openai},
        EvalBackend.llamacpp: {"settings": e.llamacpp, "openai": e.openai, "log_dir": work_dir},
        EvalBackend.vllm: {"settings": e.vllm, "seed": e.seed},
    }[e.backend]
    return getattr(importlib.import_module(module), cls)(model, **common, **own)


def validate_backend_config(eval_cfg: EvalConfig, model: ModelConfig, evaluates_adapter: bool) -> None:
    """Checks that need no server, weights or heavy import: run by the CLI before any stage."""
    import importlib.util

    from spelling_exp.errors import ConfigError, require

    e = eval_cfg
    if e.backend == EvalBackend.openai:
        from spelling_exp.evaluation.backends.openai_server import require_server_settings

        require_server_settings(e.openai.base_url, e.openai.model, adapter=False)
        if evaluates_adapter:
            require_server_settings(e.openai.base_url, e.openai.adapter_model, adapter=True)
        require(e.openai.max_concurrency >= 1, "eval.openai.max_concurrency", e.openai.max_concurrency, ">= 1")
        require(e.openai.timeout_s > 0, "eval.openai.timeout_s", e.openai.timeout_s, "> 0")
        require(e.openai.max_retries >= 0, "eval.openai.max_retries", e.openai.max_retries, ">= 0")
    elif e.backend == EvalBackend.llamacpp:
        from spelling_exp.evaluation.backends.llamacpp_server import require_xllamacpp

        require_xllamacpp()
        s = e.llamacpp
        for key in ("parallel", "ctx_per_slot", "batch", "ubatch"):
            require(getattr(s, key) >= 1, f"eval.llamacpp.{key}", getattr(s, key), ">= 1")
        from spelling_exp.evaluation.backends.llamacpp import model_gguf

        model_gguf(model, s)
        if e.merge_adapter:
            raise ConfigError("eval.merge_adapter=true: the llamacpp backend applies the adapter as a GGUF LoRA "
                              "(never merged); set eval.merge_adapter=false")
    elif e.backend == EvalBackend.vllm:
        if importlib.util.find_spec("vllm") is None:
            from spelling_exp.evaluation.backends.vllm import INSTALL

            raise ConfigError(INSTALL)
