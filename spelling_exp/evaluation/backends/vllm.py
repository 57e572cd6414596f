"""vLLM backend: the offline engine, the adapter as a ``LoRARequest`` (never merged).

vLLM 0.33 pins torch 2.14 and transformers < 5.21, so it lives in its own environment
(``bash scripts/setup.sh --vllm``, constraints-vllm.txt; CUDA machines). Prompts go in as token
ids from this project's tokenizer (``TokensPrompt``), so the model sees exactly the ids the
``hf`` backend feeds it; every request gets its own seed. A seed alone does not make a reply
independent of which other prompts share its batch: vLLM guarantees that only in batch-invariant
mode, so the engine starts with ``VLLM_BATCH_INVARIANT=1`` (unless the environment sets it) and the
mode is part of the evaluation's identity.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spelling_exp.config import EvalConfig, ModelConfig, SamplingConfig, VllmConfig
from spelling_exp.errors import ConfigError
from spelling_exp.evaluation.backends import Reply, installed
from spelling_exp.evaluation.backends.openai_server import request_seed
from spelling_exp.evaluation.backends.prompts import ChatPrompts

INSTALL = ("eval.backend=vllm needs vLLM, which is not installed here: on a CUDA machine run "
           "`bash scripts/setup.sh --vllm` and run with .venv-vllm/bin/python")


# The LoRA ranks vLLM's engine accepts for max_lora_rank.
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def batch_invariant() -> str:
    import os

    return os.environ.setdefault("VLLM_BATCH_INVARIANT", "1")


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise ConfigError(INSTALL)


SETTINGS = ("vllm",)
NOT_IN_IDENTITY: dict[str, str] = {}  # every setting can change a reply (see identity)


def identity(eval_cfg: EvalConfig) -> dict[str, Any]:
    """vLLM's version and all of eval.vllm: the memory share sets how many sequences are batched
    together, enforce_eager swaps CUDA graphs (padded batch sizes) for eager kernels and the LoRA
    rank pads the adapter; vLLM's kernels are not batch-invariant, so each can move a reply."""
    s = eval_cfg.vllm
    return {"vllm": installed("vllm"), "max_model_len": s.max_model_len,
            "gpu_memory_utilization": s.gpu_memory_utilization, "max_lora_rank": s.max_lora_rank,
            "enforce_eager": s.enforce_eager, "batch_invariant": batch_invariant()}


def check(eval_cfg: EvalConfig, model: ModelConfig, evaluates_adapter: bool) -> None:
    if eval_cfg.vllm.max_lora_rank not in LORA_RANKS:
        raise ConfigError(f"eval.vllm.max_lora_rank={eval_cfg.vllm.max_lora_rank}: vLLM accepts only "
                          f"{', '.join(map(str, LORA_RANKS))}")
    if eval_cfg.merge_adapter:  # never silently ignored
        raise ConfigError("eval.merge_adapter=true: the vllm backend applies the adapter as a LoRARequest "
                          "(never merged); set eval.merge_adapter=false")
    require_vllm()


def build(eval_cfg: EvalConfig, model: ModelConfig, adapter: str | None, cache_dir: str,
          work_dir: Path | None = None) -> VllmBackend:
    e = eval_cfg
    return VllmBackend(model, e.sampling, e.max_new_tokens, e.n_samples, adapter=adapter, cache_dir=cache_dir,
                       settings=e.vllm, seed=e.seed)


class VllmBackend(ChatPrompts):
    name = "vllm"

    def __init__(self, model: ModelConfig, sampling: SamplingConfig, max_new_tokens: int, n_samples: int = 1,
                 adapter: str | None = None, cache_dir: str | None = None, settings: VllmConfig | None = None,
                 seed: int = 0):
        require_vllm()
        super().__init__(model, cache_dir)
        self.sampling, self.max_new_tokens, self.n_samples = sampling, max_new_tokens, n_samples
        self.adapter, self.settings, self.seed = adapter, settings or VllmConfig(), seed
        self._llm: Any = None
        self._lora: Any = None

    def _load(self) -> Any:
        import json

        batch_invariant()  # before vLLM reads its environment
        from vllm import LLM
        from vllm.lora.request import LoRARequest

        from spelling_exp.model.loading import weights_path

        m, s = self.model_cfg, self.settings
        assert self.cache_dir is not None
        path = weights_path(m, self.cache_dir)
        kwargs: dict[str, Any] = {"model": path, "trust_remote_code": m.trust_remote_code, "seed": self.seed,
                                  "gpu_memory_utilization": s.gpu_memory_utilization,
                                  "max_model_len": s.max_model_len, "enforce_eager": s.enforce_eager}
        if str(m.dtype) != "auto":
            kwargs["dtype"] = str(m.dtype)
        if m.revision and path == m.path:
            kwargs["revision"] = m.revision
        if self.adapter:
            rank = int(json.loads((Path(self.adapter) / "adapter_config.json").read_text())["r"])
            if rank > s.max_lora_rank:
                fits = next((r for r in LORA_RANKS if r >= rank), None)
                raise ConfigError(f"eval.vllm.max_lora_rank={s.max_lora_rank}: the adapter has rank {rank}; "
                                  + (f"set eval.vllm.max_lora_rank={fits}" if fits else
                                     f"vLLM accepts ranks up to {LORA_RANKS[-1]}"))
            kwargs.update(enable_lora=True, max_lora_rank=s.max_lora_rank, max_loras=1)
            self._lora = LoRARequest("adapter", 1, str(self.adapter))
        return LLM(**kwargs)

    def _params(self, seed: int) -> Any:
        from vllm import SamplingParams

        stop = [self.tok.eos_token_id]
        if self.sampling.greedy:
            return SamplingParams(n=1, temperature=0.0, max_tokens=self.max_new_tokens, seed=seed,
                                  stop_token_ids=stop, skip_special_tokens=True)
        s = self.sampling
        return SamplingParams(n=1, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, min_p=s.min_p,
                              max_tokens=self.max_new_tokens, seed=seed, stop_token_ids=stop,
                              skip_special_tokens=True)

    def generate(self, prompts: Sequence[str], seed: int) -> list[list[Reply]]:
        from vllm.inputs import TokensPrompt

        if self._llm is None:
            self._llm = self._load()
        n = self.n_samples
        ids = self.token_ids(prompts)
        requests = [TokensPrompt(prompt_token_ids=ids[i]) for i in range(len(prompts)) for _ in range(n)]
        params = [self._params(request_seed(seed, i, s, n)) for i in range(len(prompts)) for s in range(n)]
        outs = self._llm.generate(requests, params, lora_request=self._lora, use_tqdm=False)
        replies = [Reply(o.outputs[0].text, o.outputs[0].finish_reason == "length") for o in outs]
        return [replies[i * n:(i + 1) * n] for i in range(len(prompts))]

    def close(self) -> None:
        """Give the GPU memory back before the next stage: vLLM refuses to start a second engine while
        less than gpu_memory_utilization x total is free, and dropping the reference frees nothing
        while the engine's workers hold it. Shut the engine down, collect, empty torch's cache."""
        llm, self._llm = self._llm, None
        if llm is None:
            return
        release_engine(llm)


def release_engine(llm: Any) -> None:
    import gc

    engine = getattr(llm, "llm_engine", None)
    for owner in (engine, llm):
        shutdown = getattr(owner, "shutdown", None)
        if callable(shutdown):
            shutdown()
            break
    del llm, engine
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is always there with vLLM
        pass
