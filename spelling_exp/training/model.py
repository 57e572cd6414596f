"""The trainable model: which backend trains (PEFT + TRL, or Unsloth on CUDA), at what precision,
and the base model with LoRA attached.

Training always starts from the base model described by ``model``; an adapter to evaluate
(``eval.adapter_path``) never reaches this module.
"""
from __future__ import annotations

from typing import Any

from spelling_exp.config import LoraConfig, ModelConfig, Precision, TrainBackend
from spelling_exp.errors import ConfigError


def choose_backend(requested: TrainBackend) -> str:
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if requested == TrainBackend.auto:
        return "unsloth" if cuda and has_unsloth else "peft"
    if requested == TrainBackend.unsloth:
        if not cuda:
            raise ConfigError("train.backend=unsloth needs a CUDA GPU; use train.backend=peft (or auto) here")
        if not has_unsloth:
            raise ConfigError("train.backend=unsloth but unsloth is not installed (pip install -e '.[unsloth]')")
        return "unsloth"
    return "peft"


def resolve_precision(precision: Precision, device: str) -> str:
    import torch

    if precision == Precision.auto:
        if device.startswith("cuda"):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision != Precision.fp32 and not device.startswith("cuda"):
        raise ConfigError(f"train.precision={precision} needs CUDA here; use fp32 (or auto) on {device}")
    return str(precision)


def load_trainable_model(model_cfg: ModelConfig, lora: LoraConfig, backend: str, cache_dir: str,
                         max_length: int, seed: int, gradient_checkpointing: bool) -> tuple[Any, Any]:
    """(peft model, tokenizer) ready for training."""
    targets = list(lora.target_modules)
    if backend == "unsloth":  # pragma: no cover - CUDA only, see README
        from unsloth import FastLanguageModel

        from spelling_exp.model.resources import resolve_model_path
        from spelling_exp.model.tokenizer import load_tokenizer

        model, _ = FastLanguageModel.from_pretrained(
            model_name=resolve_model_path(model_cfg.path), max_seq_length=max_length, dtype=None,
            load_in_4bit=False, trust_remote_code=model_cfg.trust_remote_code)
        model = FastLanguageModel.get_peft_model(
            model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
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
