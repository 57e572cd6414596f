"""Inference backends behind one small interface.

A backend turns rendered prompt strings into replies. Question building, parsing and metrics
never see which backend ran, so vLLM or an OpenAI-compatible server (Ollama, llama.cpp server)
plug in by adding a class here and a name to BACKENDS.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from ..errors import ConfigError


class GenerationBackend(Protocol):
    name: str

    def generate(self, prompts: Sequence[str], seed: int) -> list[list[str]]:
        """For each prompt, ``n_samples`` replies (special tokens stripped). Same seed, same replies."""
        ...

    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        """Token counts, used to group prompts of similar length into batches."""
        ...


BACKENDS = {"hf": "spelling_exp.backends.hf:HFBackend"}


def make_backend(name: str, **kwargs: Any) -> GenerationBackend:
    import importlib

    if name not in BACKENDS:
        raise ConfigError(f"eval.backend: unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    module, _, cls = BACKENDS[name].partition(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)
