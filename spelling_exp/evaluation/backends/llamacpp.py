"""llama.cpp backend: a local llama.cpp server on the model's GGUF, queried like any OpenAI server.

The server (``llamacpp_server.py``, the ``xllamacpp`` wheel: llama.cpp's own server, continuous
batching) starts on the first ``generate`` on 127.0.0.1 with a fresh random API key, so other
users of the machine cannot use it, and stops in ``close()``, which the evaluation recipe calls
on success, on errors and on signals (and the server exits by itself if this process dies).

An adapter is converted once to a GGUF LoRA adapter (``model/gguf_lora.py``), cached under its
fingerprint, and applied by the server to every request. The server's log is written beside the
evaluation (``<eval dir>/llamacpp_server.log``), outside the cache entry.
"""
from __future__ import annotations

import os
import secrets
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from spelling_exp.config import EvalConfig, LlamaCppConfig, ModelConfig, OpenAIBackendConfig, SamplingConfig
from spelling_exp.errors import ConfigError, require
from spelling_exp.evaluation.backends import installed
from spelling_exp.evaluation.backends.llamacpp_server import ALIAS, LlamaCppServer, require_xllamacpp
from spelling_exp.evaluation.backends.openai_server import OpenAIBackend
from spelling_exp.model.adapter import adapter_fingerprint
from spelling_exp.model.resources import gguf_path

# eval.openai is read too: the client to its own server is an OpenAI one (timeouts, retries).
SETTINGS = ("llamacpp", "openai")
NOT_IN_IDENTITY = {
    # Each dot product is summed by one thread in the same order whatever the thread count (the
    # threads share out rows), and null (the CPUs allotted) would tie the key to the machine.
    "llamacpp.threads": "how the rows are shared among threads, not what each sums",
    "llamacpp.startup_timeout_s": "how long to wait for the server to start",
    # Replaced for its own server: a loopback address, the alias, a fresh key, one slot per request.
    "openai.base_url": "replaced by the local server's address",
    "openai.model": "replaced by the local server's alias",
    "openai.adapter_model": "replaced: the server applies the adapter to every request",
    "openai.api_key_env": "replaced by the local server's own random key",
    "openai.max_concurrency": "replaced by eval.llamacpp.parallel (keyed)",
    "openai.timeout_s": "how long to wait for a reply, not which reply",
    "openai.max_retries": "how often to ask again after a failure; a reply that comes is the same",
}


def identity(eval_cfg: EvalConfig) -> dict[str, Any]:
    """The GGUF, the server's version and its slot and batch sizes: greedy replies were
    batch-invariant when measured (80 of 80 identical at 16 and 32 requests per round), but no
    kernel promises it."""
    s = eval_cfg.llamacpp
    return {"gguf": s.gguf, "xllamacpp": installed("xllamacpp"), "parallel": s.parallel,
            "ctx_per_slot": s.ctx_per_slot, "batch": s.batch, "ubatch": s.ubatch}


def check(eval_cfg: EvalConfig, model: ModelConfig, evaluates_adapter: bool) -> None:
    require_xllamacpp()
    s = eval_cfg.llamacpp
    for key in ("parallel", "ctx_per_slot", "batch", "ubatch"):
        require(getattr(s, key) >= 1, f"eval.llamacpp.{key}", getattr(s, key), ">= 1")
    model_gguf(model, s)
    if eval_cfg.merge_adapter:
        raise ConfigError("eval.merge_adapter=true: the llamacpp backend applies the adapter as a GGUF LoRA "
                          "(never merged); set eval.merge_adapter=false")


def build(eval_cfg: EvalConfig, model: ModelConfig, adapter: str | None, cache_dir: str,
          work_dir: Path | None = None) -> LlamaCppBackend:
    e = eval_cfg
    return LlamaCppBackend(model, e.sampling, e.max_new_tokens, e.n_samples, adapter=adapter, cache_dir=cache_dir,
                           settings=e.llamacpp, openai=e.openai, log_dir=work_dir)


def model_gguf(model: ModelConfig, settings: LlamaCppConfig) -> Path:
    """The GGUF the server loads: eval.llamacpp.gguf, else the model's own."""
    if settings.gguf:
        path = Path(settings.gguf).expanduser()
        if not path.is_file():
            raise ConfigError(f"eval.llamacpp.gguf={settings.gguf}: no such file")
        return path
    if not model.gguf_file:
        raise ConfigError(f"eval.backend=llamacpp: model {model.name} has no GGUF (model.gguf_file is null); set "
                          "eval.llamacpp.gguf=<file.gguf> (the same weights, converted with llama.cpp)")
    return gguf_path(model.path, model.gguf_file)


def allotted_threads(settings: LlamaCppConfig) -> int:
    """eval.llamacpp.threads, else the CPUs this job was given (the CLI sets torch's threads to them)."""
    if settings.threads:
        return settings.threads
    if "torch" in sys.modules:
        return int(sys.modules["torch"].get_num_threads())
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class LlamaCppBackend(OpenAIBackend):
    name = "llamacpp"

    def __init__(self, model: ModelConfig, sampling: SamplingConfig, max_new_tokens: int, n_samples: int = 1,
                 adapter: str | None = None, cache_dir: str | None = None,
                 settings: LlamaCppConfig | None = None, openai: OpenAIBackendConfig | None = None,
                 log_dir: Path | None = None):
        require_xllamacpp()
        self.llamacpp = settings or LlamaCppConfig()
        self.gguf = model_gguf(model, self.llamacpp)
        self._local_key = secrets.token_urlsafe(24)  # this server's only key; never written anywhere
        client = replace(openai or OpenAIBackendConfig(), max_concurrency=self.llamacpp.parallel)
        super().__init__(model, sampling, max_new_tokens, n_samples, adapter=None, cache_dir=cache_dir,
                         settings=client, base_url="http://127.0.0.1", served_model=ALIAS, api_key=self._local_key)
        self.adapter, self.log_dir = adapter, log_dir
        self.server: LlamaCppServer | None = None

    def _gguf_lora(self) -> str:
        from spelling_exp.model.gguf_lora import peft_to_gguf_lora
        from spelling_exp.storage.cache import ArtifactCache, cache_key

        assert self.adapter is not None and self.cache_dir is not None
        payload = {"kind": "gguf_lora", "adapter": adapter_fingerprint(self.adapter), "base_gguf": str(self.gguf),
                   "format": 1}
        adapter = Path(self.adapter)
        entry, _ = ArtifactCache(self.cache_dir, "gguf_lora").get_or_build(
            cache_key(payload), payload, lambda tmp: peft_to_gguf_lora(adapter, self.gguf, tmp / "lora.gguf"))
        return str(entry / "lora.gguf")

    def _connect(self):
        s = self.llamacpp
        settings = {"gguf": str(self.gguf), "parallel": s.parallel, "ctx_per_slot": s.ctx_per_slot, "batch": s.batch,
                    "ubatch": s.ubatch, "threads": allotted_threads(s), "api_key": self._local_key,
                    "lora": self._gguf_lora() if self.adapter else None}
        log_dir = self.log_dir or Path(self.cache_dir or ".") / "llamacpp_logs"
        self.server = LlamaCppServer(settings, log_dir / "llamacpp_server.log", s.startup_timeout_s)
        self.base_url = self.server.start() + "/v1"
        return super()._connect()

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.server is not None:
                self.server.stop()
                self.server = None
