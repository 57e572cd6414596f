"""A randomly initialised Qwen3 at toy size (``model=qwen3_tiny``): the real pipeline on Qwen3's
architecture, tokenizer and non-thinking chat format, in seconds on a CPU. Its answers are noise;
it exists to test the Qwen3 plumbing end to end (``+experiment=smoke_qwen3``).

``model.path: random:qwen3`` says the weights are read from nowhere: they are built from
``model.random_init`` (seed and sizes), with every other choice Qwen3-4B's, fixed here in
``QWEN3_4B_ARCH``: q/k RMSNorm (built into Qwen3's attention), grouped-query attention, a head_dim
set apart from hidden_size / heads, tied input and output embeddings, RoPE theta 1e6, RMSNorm eps
1e-6, SiLU, the real vocabulary (151,936 rows; the tokenizer uses 151,669 of them) and context
length. The tokenizer is the offline Qwen3 rebuild (``tokenizer_source: offline``).

Built on first use into the content-addressed cache as ``<cache_dir>/models/qwen3-tiny-<hash>/``
(config.json, generation_config.json, model.safetensors), where the hash covers everything that
determines the weights (this builder's version, the full Qwen3 config, the seed). It goes through
``storage.cache.ArtifactCache``: a per-key file lock, a private temp dir renamed into place, every
file's size and sha256 recorded and checked on every use; a corrupt entry is rebuilt, and the
rebuild gives the same bytes again.

Deterministic to the byte: each tensor comes from its own ``torch.Generator`` seeded by
sha256(seed, tensor name), so neither transformers' initialisation order nor the process's global
RNG (left untouched) matters. Values are integers from ``randint`` (exact integer arithmetic on the
Mersenne Twister stream) times a power of two, so no float rounding differs between CPUs: uniform
on [-2^-5, 2^-5) in steps of 2^-20 (std 0.018, about Qwen3's initializer_range 0.02); norm weights
are ones.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from spelling_exp.errors import ConfigError, require
from spelling_exp.storage.cache import ArtifactCache, cache_key

log = logging.getLogger(__name__)

RANDOM_PREFIX = "random:"
# bump when the builder's output changes: a new cache entry and new downstream keys (2: tokenizer files)
TINY_FORMAT_VERSION = 2
# Qwen3-4B's config.json, less its sizes (those come from model.random_init).
QWEN3_4B_ARCH: dict[str, Any] = {
    "vocab_size": 151936, "max_position_embeddings": 40960, "hidden_act": "silu", "rms_norm_eps": 1e-6,
    "rope_theta": 1_000_000.0, "tie_word_embeddings": True, "attention_bias": False, "attention_dropout": 0.0,
    "use_sliding_window": False, "sliding_window": None, "initializer_range": 0.02,
    "bos_token_id": 151643, "eos_token_id": 151645,
}
# Qwen3-4B's generation_config.json, less its sampling settings (evaluation passes its own).
GENERATION = {"bos_token_id": 151643, "eos_token_id": [151645, 151643], "pad_token_id": 151643}
_LEVELS, _SCALE = 1 << 16, 2.0 ** -20  # uniform weights: (k - 2^15) * 2^-20, k in [0, 2^16)


def is_random(path: str) -> bool:
    return str(path).startswith(RANDOM_PREFIX)


def check_random_init(m: Any) -> None:
    """Before anything loads: ``random:<arch>`` and ``model.random_init`` come together, the
    architecture is one we build, and the sizes make a valid model."""
    if not is_random(m.path):
        if m.random_init is not None:
            raise ConfigError(f"model.random_init is set but model.path={m.path} is not random:qwen3; "
                              "set model.random_init=null, or use model=qwen3_tiny")
        return
    arch = m.path[len(RANDOM_PREFIX):]
    require(arch == "qwen3", "model.path", m.path, "random:qwen3 (the only architecture built from random_init)")
    if m.random_init is None:
        raise ConfigError(f"model.path={m.path} needs model.random_init (seed and sizes, as in "
                          "conf/model/qwen3_tiny.yaml)")
    require(str(m.family) == "qwen3", "model.family", m.family, "qwen3 for a random:qwen3 model (non-thinking rules)")
    require(str(m.tokenizer_source) == "offline", "model.tokenizer_source", m.tokenizer_source,
            "offline for a random:qwen3 model (there is no hub repository to read it from)")
    r = m.random_init
    for key in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                "num_key_value_heads"):
        require(getattr(r, key) >= 1, f"model.random_init.{key}", getattr(r, key), ">= 1")
    require(r.num_attention_heads % r.num_key_value_heads == 0, "model.random_init.num_key_value_heads",
            r.num_key_value_heads, f"a divisor of num_attention_heads ({r.num_attention_heads})")
    require(r.head_dim >= 2 and r.head_dim % 2 == 0, "model.random_init.head_dim", r.head_dim, "even and >= 2 (RoPE)")


def qwen3_config_kwargs(random_init: Any) -> dict[str, Any]:
    """The full ``Qwen3Config`` arguments: Qwen3-4B's architecture at ``random_init``'s sizes."""
    r = random_init
    return {**QWEN3_4B_ARCH, "num_hidden_layers": r.num_hidden_layers, "max_window_layers": r.num_hidden_layers,
            "hidden_size": r.hidden_size, "intermediate_size": r.intermediate_size,
            "num_attention_heads": r.num_attention_heads, "num_key_value_heads": r.num_key_value_heads,
            "head_dim": r.head_dim}


def tiny_payload(m: Any) -> dict[str, Any]:
    return {"format": TINY_FORMAT_VERSION, "arch": m.path[len(RANDOM_PREFIX):],
            "config": qwen3_config_kwargs(m.random_init), "generation": GENERATION, "seed": m.random_init.seed}


def tiny_key(m: Any) -> str:
    """The cache entry's name: ``qwen3-tiny-<hash of everything that determines the weights>``."""
    return f"qwen3-tiny-{cache_key(tiny_payload(m))}"


def _tensor_seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


def build_tiny_qwen3(m: Any, out_dir: str | os.PathLike, cache_dir: str | os.PathLike) -> None:
    """Write the model's files into ``out_dir`` (an empty dir): the same bytes for the same config.
    The tokenizer goes beside the weights: AutoTokenizer on a dir without one returns an empty
    tokenizer (one entry, end of sequence id 0), and vLLM then decodes empty text."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(**qwen3_config_kwargs(m.random_init))
    theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", getattr(config, "rope_theta", None))
    if theta != QWEN3_4B_ARCH["rope_theta"]:  # a transformers version that dropped the rope_theta argument
        raise RuntimeError(f"Qwen3Config ignored rope_theta={QWEN3_4B_ARCH['rope_theta']} (got {theta})")
    with torch.random.fork_rng(devices=[]):  # transformers' own init draws from the global RNG; we overwrite it
        model = Qwen3ForCausalLM(config).to(torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():  # the tied lm_head is the embedding: listed once
            if p.dim() == 1:  # RMSNorm weights (input, post-attention, q_norm, k_norm, final)
                p.fill_(1.0)
                continue
            g = torch.Generator().manual_seed(_tensor_seed(m.random_init.seed, name))
            k = torch.randint(0, _LEVELS, tuple(p.shape), generator=g, dtype=torch.int64)
            p.copy_((k - _LEVELS // 2).to(torch.float32) * _SCALE)
    if not config.tie_word_embeddings or model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        raise RuntimeError("the tiny Qwen3's output embedding is not tied to its input embedding")
    model.generation_config = GenerationConfig(**GENERATION)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    from spelling_exp.model.tokenizer import build_offline_qwen3_tokenizer

    build_offline_qwen3_tokenizer(cache_dir).save_pretrained(str(out_dir))


def tiny_model_dir(m: Any, cache_dir: str | os.PathLike) -> Path:
    """The directory ``from_pretrained`` loads: built once, then verified (sha256 of every file) on each use."""
    check_random_init(m)

    def build(tmp: Path) -> None:
        log.info("building %s once from seed %d (cached in %s)", m.path, m.random_init.seed,
                 Path(cache_dir) / "models" / key)
        build_tiny_qwen3(m, tmp, cache_dir)

    key = tiny_key(m)
    entry, _ = ArtifactCache(cache_dir, "models").get_or_build(key, tiny_payload(m), build)
    return entry
