"""The trainable model: which backend trains (PEFT + TRL, or Unsloth on CUDA), at what precision,
and the base model with LoRA attached.

Training always starts from the base model described by ``model``; an adapter to evaluate
(``eval.adapter_path``) never reaches this module.

Unsloth's pitfalls, each handled here or in the recipe (facts from unsloth 2026.10.9's source):

- **Import order.** Unsloth patches transformers, TRL and PEFT when it is imported and warns that
  its patches are incomplete when any of them came first. ``import_unsloth_first`` refuses to
  import it late; the recipe runs unsloth training in a fresh process (``isolation.py``), which also
  keeps unsloth's global patches out of the evaluation stages of the calling process.
- **Padding-free batching.** Its SFT trainer turns padding-free batching on by itself when
  ``padding_free`` is unset (``None``), unless ``UNSLOTH_DISABLE_AUTO_PADDING_FREE`` is set when
  unsloth is imported: the collator then sends ``position_ids`` and no attention mask, which our
  loss (``LeanSFTTrainer.compute_loss``) would ignore, letting the sequences of a batch attend to
  each other. We set the variable before the import, pass ``padding_free=False`` explicitly, and
  ``trainer.check_padded_batches`` refuses a built trainer that would still be padding-free.
- **DoRA.** ``FastLanguageModel.get_peft_model`` has no ``use_dora`` parameter (DoRA only passes
  through its ``**kwargs`` to PEFT and then runs PEFT's own, unfused layers); this code never
  passed it, so a DoRA config would have trained plain LoRA under a DoRA cache key. Refused.
- **Dropout.** Unsloth's fused LoRA kernels are documented for ``lora_dropout=0``; with dropout
  older releases (and 2026.10 with ``UNSLOTH_FUSED_LORA_DROPOUT=0``) fall back to PEFT's slower
  layers. Warned about once per process.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from spelling_exp.config import LoraConfig, ModelConfig, Precision, TrainBackend
from spelling_exp.errors import ConfigError

log = logging.getLogger(__name__)

# Set before unsloth is imported: it reads the variable once, at import.
UNSLOTH_ENV = {"UNSLOTH_DISABLE_AUTO_PADDING_FREE": "1"}
# Unsloth must be imported before these (it patches them).
PATCHED_BY_UNSLOTH = ("transformers", "trl", "peft")
_warned: set[str] = set()


def choose_backend(requested: TrainBackend, lora: LoraConfig | None = None) -> str:
    """``peft`` or ``unsloth``. ``auto``: unsloth when CUDA and unsloth are there and the LoRA settings
    allow it (not DoRA), else peft. ``unsloth`` on a machine or with settings that cannot: one line."""
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    dora = lora is not None and lora.use_dora
    if requested == TrainBackend.auto:
        if dora and cuda and has_unsloth:
            log.info("lora.use_dora=true: unsloth has no DoRA, so train.backend=auto trains with peft")
        if cuda and has_unsloth and not dora:
            if lora is not None:
                check_unsloth_lora(lora)
            return "unsloth"
        return "peft"
    if requested == TrainBackend.unsloth:
        if lora is not None:
            check_unsloth_lora(lora)
        if not cuda:
            raise ConfigError("train.backend=unsloth needs a CUDA GPU; use train.backend=peft (or auto) here")
        if not has_unsloth:
            raise ConfigError("train.backend=unsloth but unsloth is not installed (bash scripts/setup.sh --cuda)")
        return "unsloth"
    return "peft"


def check_unsloth_lora(lora: LoraConfig) -> None:
    """LoRA settings under the unsloth backend: DoRA refused (one line), dropout warned about once."""
    if lora.use_dora:
        raise ConfigError("lora.use_dora=true: unsloth's get_peft_model does not support DoRA; "
                          "use train.backend=peft (or auto, which picks peft for DoRA), or lora.use_dora=false")
    if lora.dropout != 0 and "dropout" not in _warned:
        _warned.add("dropout")
        log.warning("lora.dropout=%s with train.backend=unsloth: unsloth's fast LoRA kernels are built for "
                    "dropout 0 and may fall back to slower PEFT layers; set lora.dropout=0 for its full speed",
                    lora.dropout)


def mark_dropout_warned() -> None:
    """The parent process already warned (a training child must not repeat it)."""
    _warned.add("dropout")


def imported_before_unsloth(modules: Mapping[str, Any] | None = None) -> list[str]:
    """Which of transformers / trl / peft this process imported before unsloth (all of those it
    imported, when it has not imported unsloth). ``sys.modules`` keeps insertion order, and a
    module is inserted when its import starts, so unsloth importing transformers itself counts
    as unsloth first."""
    modules = sys.modules if modules is None else modules
    order = {name: i for i, name in enumerate(modules)}
    limit = order.get("unsloth", len(order))
    return [m for m in PATCHED_BY_UNSLOTH if m in order and order[m] < limit]


def import_unsloth_first() -> None:
    """Import unsloth before transformers / trl / peft, with auto padding-free off; refuse when too late."""
    early = imported_before_unsloth()
    if early:
        raise ConfigError(f"train.backend=unsloth: unsloth must be imported before {', '.join(early)}, which this "
                          "process already imported; run training on its own (python -m spelling_exp stage=train "
                          "...), where the recipe starts it in a fresh process")
    os.environ.update(UNSLOTH_ENV)
    import unsloth  # noqa: F401


def resolve_precision(precision: Precision, device: str) -> str:
    import torch

    if precision == Precision.auto:
        if device.startswith("cuda"):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision != Precision.fp32 and not device.startswith("cuda"):
        raise ConfigError(f"train.precision={precision} needs CUDA here; use fp32 (or auto) on {device}")
    return str(precision)


def unsloth_load_kwargs(model_cfg: ModelConfig, cache_dir: str, max_length: int, dtype: Any) -> dict[str, Any]:
    """FastLanguageModel.from_pretrained's arguments. use_exact_model_name: without it Unsloth's name
    mapper turns Qwen/Qwen3-4B into unsloth/Qwen3-4B, drops the revision, and offline never falls back
    to the name asked for: it would train another repo than the one evaluated."""
    extra = {"revision": model_cfg.revision} if model_cfg.revision else {}
    return {"model_name": unsloth_model_dir(model_cfg, cache_dir), "max_seq_length": max_length, "dtype": dtype,
            "load_in_4bit": False, "trust_remote_code": model_cfg.trust_remote_code, "use_exact_model_name": True,
            **extra}


def load_trainable_model(model_cfg: ModelConfig, lora: LoraConfig, backend: str, cache_dir: str,
                         max_length: int, seed: int, gradient_checkpointing: bool) -> tuple[Any, Any]:
    """(peft model, tokenizer) ready for training."""
    targets = list(lora.target_modules)
    if backend == "unsloth":  # pragma: no cover - CUDA only (benchmarks/gpu_validate.py runs it)
        check_unsloth_lora(lora)
        import_unsloth_first()
        import torch
        from unsloth import FastLanguageModel

        from spelling_exp.model.tokenizer import load_tokenizer

        dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}.get(
            str(model_cfg.dtype))  # auto: unsloth picks bf16 where the GPU has it
        model, _ = FastLanguageModel.from_pretrained(**unsloth_load_kwargs(model_cfg, cache_dir, max_length, dtype))
        model = FastLanguageModel.get_peft_model(
            model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, bias="none",
            use_rslora=lora.use_rslora, random_state=seed,
            use_gradient_checkpointing="unsloth" if gradient_checkpointing else False)
        return model, load_tokenizer(model_cfg, cache_dir)

    import torch
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    from spelling_exp.model.loading import load_model, strip_gguf_quantization_marker

    model, tok, _ = load_model(model_cfg, cache_dir, for_training=True)
    strip_gguf_quantization_marker(model)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in targets if m not in present]
    if missing:
        raise ConfigError(f"lora.target_modules {missing} not found in {model_cfg.name}")
    peft_cfg = PeftLoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                              use_rslora=lora.use_rslora, use_dora=lora.use_dora, bias="none", task_type="CAUSAL_LM")
    # LoRA A is initialised from torch's global RNG here, before the trainer seeds anything:
    # without this seed every run started from different weights and no adapter was reproducible.
    torch.manual_seed(seed)
    model = get_peft_model(model, peft_cfg)
    if gradient_checkpointing:
        model.enable_input_require_grads()
    return model, tok


def unsloth_model_dir(model_cfg: ModelConfig, cache_dir: str) -> str:  # pragma: no cover - CUDA only
    """What ``FastLanguageModel.from_pretrained`` reads: a hub id or a directory, never a GGUF file or
    ``random:`` (those are built once into the cache, as ``model.loading.load_model`` does)."""
    from spelling_exp.model.resources import gguf_path, resolve_model_path

    if str(model_cfg.path).startswith("random:"):
        from spelling_exp.model.tiny import tiny_model_dir

        return str(tiny_model_dir(model_cfg, cache_dir))
    if model_cfg.gguf_file:
        from spelling_exp.model.loading import gguf_to_safetensors

        return str(gguf_to_safetensors(gguf_path(model_cfg.path, model_cfg.gguf_file), cache_dir, model_cfg))
    return resolve_model_path(model_cfg.path)


# The linear layers of the decoder architectures the families use (Llama-style attention + SwiGLU
# MLP: SmolLM2 is a Llama, Qwen3 the same names), so lora.target_modules is checked before any
# stage runs, without loading weights. Other architectures are checked when the model loads.
LLAMA_STYLE_LINEAR = frozenset({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
LLAMA_STYLE_TYPES = frozenset({"llama", "qwen2", "qwen3", "mistral"})


def known_linear_modules(model_cfg: Any) -> frozenset[str] | None:
    """The names LoRA can target in this model, from its config alone; None when not known up front."""
    import json
    from pathlib import Path

    if str(model_cfg.family) in ("qwen3", "smollm2") or str(model_cfg.path).startswith("random:qwen3"):
        return LLAMA_STYLE_LINEAR
    config = Path(str(model_cfg.path)).expanduser() / "config.json"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text()).get("model_type")
        except (OSError, ValueError):
            return None
        return LLAMA_STYLE_LINEAR if model_type in LLAMA_STYLE_TYPES else None
    return None


def check_target_modules(lora: Any, model_cfg: Any) -> None:
    known = known_linear_modules(model_cfg)
    targets = list(lora.target_modules)
    if known is None or targets == ["all-linear"]:
        return
    missing = [m for m in targets if m not in known]
    if missing:
        raise ConfigError(f"lora.target_modules={targets}: {', '.join(missing)} not in {model_cfg.name} "
                          f"(its linear layers: {', '.join(sorted(known))})")
