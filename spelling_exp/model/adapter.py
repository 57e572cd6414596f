"""A LoRA adapter's identity: the hash of its files, whatever directory they sit in.

An evaluation's cache key and a GGUF LoRA conversion's both name an adapter by it, so the same
adapter copied elsewhere (a run dir, eval.adapter_path) hits the same cache entries.
"""
from __future__ import annotations

from pathlib import Path

from spelling_exp.storage.io import sha256_file, sha256_text


def adapter_fingerprint(adapter: str | None) -> str | None:
    """The hash of the adapter's ``adapter_*`` files (config and weights); None without an adapter."""
    if not adapter:
        return None
    files = sorted(p for p in Path(adapter).glob("adapter_*") if p.is_file())
    return sha256_text("".join(f"{p.name}:{sha256_file(p)}" for p in files))
