"""Model loading: hub id, local directory, GGUF file, or random weights (``random:qwen3``, built
once by model/tiny.py); device and dtype; optional LoRA adapter.

GGUF (the embedded SmolLM2): transformers dequantizes it to float32 in ~12-15 s of pure-Python
parsing. We do that once, strip the GGUF quantization marker (it makes TRL refuse to train and
``save_pretrained`` refuse to save although the weights are plain fp32), and cache the result
as safetensors, so later loads take well under a second.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from spelling_exp.errors import ConfigError, ModelLoadError
from spelling_exp.model.resources import gguf_path, resolve_model_path
from spelling_exp.model.tiny import is_random, tiny_model_dir
from spelling_exp.model.tokenizer import gguf_cache_dir, hub_reachable, load_tokenizer, looks_like_hub_id
from spelling_exp.storage.io import safetensors_complete

log = logging.getLogger(__name__)
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}


def resolve_device(device: str) -> str:
    import torch

    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelLoadError(f"model.device={device} but CUDA is not available")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def check_merge_dtype(dtype: str, resolved: str | None = None) -> None:
    """eval.merge_adapter folds B @ A into the base weights in their dtype, so only float32 weights
    keep a small delta (see load_model). ``dtype``: model.dtype as configured (checked before any
    stage runs); ``resolved``: what it became on this device (at load time: auto may be bfloat16)."""
    weights = resolved or _DTYPES.get(dtype, dtype)
    if weights in ("bfloat16", "float16"):
        shown = f"model.dtype={dtype}" + (f" ({weights} on this device)" if weights != _DTYPES.get(dtype) else "")
        raise ConfigError(f"eval.merge_adapter=true with {shown} would round the LoRA delta away; "
                          "set model.dtype=float32 or eval.merge_adapter=false")


def resolve_dtype(dtype: str, device: str) -> Any:
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32  # CPU/MPS: fp32 is the safe, fast-enough default
    if dtype not in _DTYPES:
        raise ModelLoadError(f"model.dtype: unknown dtype '{dtype}' (use auto, float32, bfloat16, float16)")
    if device == "cpu" and _DTYPES[dtype] == "bfloat16":
        log.warning("bfloat16 on CPU is slow here; consider model.dtype=float32")
    return getattr(torch, _DTYPES[dtype])


def strip_gguf_quantization_marker(model: Any) -> Any:
    """GGUF-loaded weights are dequantized fp32, but the model still claims to be quantized."""
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    for attr in ("is_quantized", "quantization_method"):
        if attr in vars(model):
            delattr(model, attr)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model


def _converted(target: Path) -> bool:
    """A complete earlier conversion; a truncated one (a crash, a full disk) is redone."""
    weights = target / "model.safetensors"
    try:
        if safetensors_complete(weights) and (target / "config.json").is_file():
            return True
    except OSError:
        return False
    log.warning("converted model %s is incomplete; converting again", target)
    shutil.rmtree(target, ignore_errors=True)
    return False


def gguf_to_safetensors(gguf: Path, cache_dir: str | os.PathLike, model_cfg: Any) -> Path:
    """Convert once; returns a directory loadable with from_pretrained (weights + tokenizer)."""
    from transformers import AutoModelForCausalLM

    target = gguf_cache_dir(gguf, cache_dir, "models")
    if _converted(target):
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if _converted(target):
            return target
        log.info("converting %s to safetensors once (cached in %s)", gguf.name, target)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                     trust_remote_code=model_cfg.trust_remote_code)
        strip_gguf_quantization_marker(model)
        tok = load_tokenizer(model_cfg, cache_dir)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp), safe_serialization=True)
        tok.save_pretrained(str(tmp))
        os.replace(tmp, target)
    return target


def weights_path(model_cfg: Any, cache_dir: str | os.PathLike) -> str:
    """Where ``from_pretrained`` (or vLLM) finds the weights: a hub id or directory as configured,
    the cached build of a random model, or the cached safetensors conversion of a GGUF."""
    if is_random(model_cfg.path):
        return str(tiny_model_dir(model_cfg, cache_dir))  # built once, verified on every use
    if model_cfg.gguf_file:
        return str(gguf_to_safetensors(gguf_path(model_cfg.path, model_cfg.gguf_file), cache_dir, model_cfg))
    return resolve_model_path(model_cfg.path)


def load_model(model_cfg: Any, cache_dir: str | os.PathLike, adapter_path: str | None = None,
               for_training: bool = False, merge_adapter: bool = False) -> tuple[Any, Any, str]:
    """(model, tokenizer, device). The tokenizer is left-padding, for generation.

    ``adapter_path``: a LoRA adapter to apply: trainable for training; for inference it stays
    unmerged (the LoRA path runs beside the base weights) unless ``merge_adapter``. Merging folds
    B @ A into the base weights *in their dtype*: in bf16 (8 bits of mantissa) a delta smaller
    than ~1/256 of a weight rounds away, so a small-scale adapter would be evaluated as partly
    undone. Merging is therefore allowed only for float32 weights, where it is exact to ~1e-7.
    """
    from transformers import AutoModelForCausalLM

    device = resolve_device(model_cfg.device)
    dtype = resolve_dtype(model_cfg.dtype, device)
    tok = load_tokenizer(model_cfg, cache_dir)
    path = weights_path(model_cfg, cache_dir)
    kwargs: dict[str, Any] = {"trust_remote_code": model_cfg.trust_remote_code, "dtype": dtype}
    if not (is_random(model_cfg.path) or model_cfg.gguf_file):
        kwargs["revision"] = model_cfg.revision
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as e:
        if looks_like_hub_id(path) and not hub_reachable():
            raise ModelLoadError(
                f"model.path={model_cfg.path}: the weights are not in the local Hugging Face cache and the hub is "
                f"unreachable; download them where there is a network (hf download {model_cfg.path}) or set "
                "model.path=<local directory with the weights>") from None
        raise ModelLoadError(f"cannot load model '{model_cfg.path}': {str(e).splitlines()[0]}") from None
    adapter = adapter_path  # only ever explicit: the model config describes the base model
    if adapter:
        from peft import PeftModel

        if not (Path(adapter) / "adapter_config.json").is_file():
            raise ModelLoadError(f"no LoRA adapter at {adapter} (adapter_config.json missing)")
        model = PeftModel.from_pretrained(model, adapter, is_trainable=for_training)
        if merge_adapter and not for_training:
            check_merge_dtype(str(model_cfg.dtype), str(dtype).removeprefix("torch."))
            model = model.merge_and_unload()
    model.to(device)
    if not for_training:
        # No global torch.set_grad_enabled(False): training may follow in the same process.
        # Backends generate under torch.inference_mode().
        model.eval()
    if model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok, device
