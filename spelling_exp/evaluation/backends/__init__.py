"""Inference backends behind one small interface; each owns its tokenizer and model.

A backend is built from the model config, the generation settings and an optional LoRA
adapter. It renders questions into the model's chat format (through ``model.chat``, the one
place prompts are rendered), counts prompt tokens (for the batch plan), and turns prompts into
replies. Weights load on the first ``generate``, so a fully resumed or cached evaluation never
loads them. Question building, parsing and metrics never see which backend ran: vLLM or an
OpenAI-compatible server plug in by adding a class and a name to ``EvalBackend`` / ``BACKENDS``.
"""
from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
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


BACKENDS: dict[EvalBackend, str] = {EvalBackend.hf: "spelling_exp.evaluation.backends.hf:HFBackend"}


def make_backend(eval_cfg: EvalConfig, model: ModelConfig, adapter: str | None, cache_dir: str) -> Any:
    """The configured backend for ``model`` (+ ``adapter``), generating as ``eval_cfg`` says."""
    module, _, cls = BACKENDS[eval_cfg.backend].partition(":")
    return getattr(importlib.import_module(module), cls)(
        model, sampling=eval_cfg.sampling, max_new_tokens=eval_cfg.max_new_tokens, n_samples=eval_cfg.n_samples,
        adapter=adapter, cache_dir=cache_dir, merge_adapter=eval_cfg.merge_adapter)
