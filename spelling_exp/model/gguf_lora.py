"""A PEFT LoRA adapter as a GGUF LoRA adapter, for llama.cpp's ``--lora``.

llama.cpp applies ``scale * alpha / r * B @ A`` to each adapted weight. Its adapter file holds,
for every adapted weight ``blk.N.<name>.weight`` of the base GGUF, the two factors
``<weight>.lora_a`` (PyTorch shape r x in) and ``<weight>.lora_b`` (out x r), stored as they
are (GGUF reverses the dimension order, which is what llama.cpp checks), plus
``adapter.lora.alpha``.

Two things differ from a naive copy:
- llama-architecture GGUFs store the q/k projections with their rows permuted (llama.cpp's
  rotary layout; transformers undoes it when it loads the GGUF), so the rows of ``lora_b`` of
  q_proj / k_proj get the same permutation.
- rsLoRA scales by alpha / sqrt(r), llama.cpp by alpha / r: the alpha written is alpha * sqrt(r).

The conversion is deterministic: the same adapter gives the same bytes (it is cached by the
adapter's fingerprint). DoRA and trained non-LoRA modules (modules_to_save) cannot be expressed
as a llama.cpp LoRA and are refused.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from spelling_exp.errors import ConfigError

PEFT_PREFIX = "base_model.model."
PERMUTED_ARCHS = {"llama"}  # convert_hf_to_gguf permutes q/k rows for these


def _permute_rows(w: Any, n_head: int) -> Any:
    """llama.cpp's q/k row order: within each head, the two rotary halves interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    return f.contents() if f is not None else None


def peft_to_gguf_lora(adapter_dir: Path, base_gguf: Path, out: Path) -> None:
    """Write ``adapter_dir`` (a PEFT LoRA) as a GGUF LoRA adapter for ``base_gguf`` at ``out``."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if cfg.get("use_dora"):
        raise ConfigError(f"{adapter_dir}: a DoRA adapter has no llama.cpp form; evaluate it with eval.backend=hf")
    if cfg.get("modules_to_save"):
        raise ConfigError(f"{adapter_dir}: modules_to_save={cfg['modules_to_save']} are full weights, not LoRA; "
                          "evaluate it with eval.backend=hf")
    r, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    if cfg.get("use_rslora"):
        alpha *= math.sqrt(r)
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern"):
        raise ConfigError(f"{adapter_dir}: per-module ranks / alphas have no llama.cpp form (one alpha per file)")

    reader = gguf.GGUFReader(str(base_gguf))
    arch_name = _field(reader, "general.architecture")
    arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}.get(arch_name)
    if arch is None:
        raise ConfigError(f"{base_gguf}: architecture {arch_name!r} unknown to the gguf package")
    n_blocks = int(_field(reader, f"{arch_name}.block_count"))
    n_head = int(_field(reader, f"{arch_name}.attention.head_count"))
    n_head_kv = int(_field(reader, f"{arch_name}.attention.head_count_kv") or n_head)
    base_names = {t.name for t in reader.tensors}
    names = gguf.get_tensor_name_map(arch, n_blocks)

    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))
    pairs: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        module, _, factor = key.removeprefix(PEFT_PREFIX).rpartition(".lora_")
        if factor not in ("A.weight", "B.weight"):
            raise ConfigError(f"{adapter_dir}: tensor {key} is not a LoRA factor; evaluate it with eval.backend=hf")
        gname = names.get_name(module)
        if gname is None or f"{gname}.weight" not in base_names:
            raise ConfigError(f"{adapter_dir}: {module} has no counterpart in {base_gguf.name}")
        pairs.setdefault(gname, {})[factor[0]] = value.astype(np.float32)

    writer = gguf.GGUFWriter(str(out), arch_name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for gname in sorted(pairs):
        a, b = pairs[gname]["A"], pairs[gname]["B"]
        if arch_name in PERMUTED_ARCHS and gname.endswith(".attn_q"):
            b = _permute_rows(b, n_head)
        elif arch_name in PERMUTED_ARCHS and gname.endswith(".attn_k"):
            b = _permute_rows(b, n_head_kv)
        writer.add_tensor(f"{gname}.weight.lora_a", np.ascontiguousarray(a))
        writer.add_tensor(f"{gname}.weight.lora_b", np.ascontiguousarray(b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
