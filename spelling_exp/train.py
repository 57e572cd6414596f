"""LoRA spelling training: TRL SFTTrainer (PEFT) everywhere, Unsloth's FastLanguageModel on CUDA.

Data. Each spelling example is split into (prompt, completion) by ``chat.split_prompt_completion``:
the prompt is *exactly* the generation prompt evaluation uses (for Qwen3 it ends with the empty
think block), the completion is the answer plus the end-of-turn token. We tokenize the two parts
separately and concatenate, so the prompt ids at training time are the evaluation prompt ids,
and pass TRL a pre-tokenized dataset with ``completion_mask``: TRL builds the labels (loss on
the answer only) and pads batches with its own collator.

Batches. We use this project's length-bucketed loader rather than transformers'
``group_by_length``: the loader's windows bound the within-batch length spread by a tolerance
(padding ~2% here vs. what a random sampler gives), it is seeded per epoch, and the exact batch
order is a plain dataset in file order, so a resumed run replays the same batches. The trainer
reads that order with a sequential sampler.

Loss. TRL 1.16 computes the loss through a "fused LM head" that, off Triton devices, projects
*every* position (prompt included) through the LM head in chunks, also computes full-vocabulary
entropy and top-1 accuracy for its logs, and recomputes the chunks in backward. On a CPU that
made a step 1.3-1.5x slower than a bare loop. ``LeanSFTTrainer.compute_loss`` instead runs the
backbone once and projects only the positions that carry a label (the answer tokens) through
the LM head: the same loss, less work than even a bare loop. TRL's data handling is kept.
"""
from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import Any

from .chat import build_messages, split_prompt_completion
from .errors import ConfigError

log = logging.getLogger(__name__)
LORA_PRESET_MODULES = {
    "attn_only": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all_linear": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
}


# ----------------------------------------------------------------------------------- backend
def choose_backend(requested: str) -> str:
    import importlib.util

    import torch

    cuda = torch.cuda.is_available()
    has_unsloth = importlib.util.find_spec("unsloth") is not None
    if requested == "auto":
        return "unsloth" if cuda and has_unsloth else "peft"
    if requested == "unsloth":
        if not cuda:
            raise ConfigError("train.backend=unsloth needs a CUDA GPU; use train.backend=peft (or auto) here")
        if not has_unsloth:
            raise ConfigError("train.backend=unsloth but unsloth is not installed (pip install -e '.[unsloth]')")
        return "unsloth"
    if requested == "peft":
        return "peft"
    raise ConfigError(f"train.backend must be auto, peft or unsloth, not '{requested}'")


def resolve_precision(precision: str, device: str) -> str:
    import torch

    if precision == "auto":
        if device.startswith("cuda"):
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if precision not in ("bf16", "fp16", "fp32"):
        raise ConfigError(f"train.precision must be auto, bf16, fp16 or fp32, not '{precision}'")
    if precision != "fp32" and not device.startswith("cuda"):
        raise ConfigError(f"train.precision={precision} needs CUDA here; use fp32 (or auto) on {device}")
    return precision


# -------------------------------------------------------------------------------------- data
def tokenize_examples(examples: list[dict[str, Any]], tok: Any, model_cfg: Any,
                      max_length: int) -> dict[str, dict[str, list[int]]]:
    """id -> {input_ids, completion_mask}; the prompt part equals the evaluation prompt's ids."""
    prompts, completions = [], []
    for ex in examples:
        msgs = build_messages(ex["user"], model_cfg.system_prompt, ex["assistant"])
        prompt, completion = split_prompt_completion(tok, msgs, model_cfg.family, model_cfg.chat_template_kwargs)
        # The template ends the turn with "<|im_end|>\n"; generation stops at <|im_end|>, so train up to it.
        prompts.append(prompt)
        completions.append(completion.rstrip("\n"))
    p_ids = tok(prompts, add_special_tokens=False)["input_ids"]
    c_ids = tok(completions, add_special_tokens=False)["input_ids"]
    out = {}
    for ex, p, c in zip(examples, p_ids, c_ids):
        ids = (p + c)[:max_length]
        mask = ([0] * len(p) + [1] * len(c))[:max_length]
        out[ex["id"]] = {"input_ids": ids, "completion_mask": mask}
    return out


def build_val_dataset(examples_path: Path, tok: Any, cfg: Any) -> Any:
    """Validation spelling examples (words disjoint from training words), for the eval loss."""
    from datasets import Dataset

    from .io import iter_jsonl

    examples = list(iter_jsonl(examples_path))
    tokenized = tokenize_examples(examples, tok, cfg.model, cfg.train.max_length)
    return Dataset.from_dict({"input_ids": [tokenized[e["id"]]["input_ids"] for e in examples],
                              "completion_mask": [tokenized[e["id"]]["completion_mask"] for e in examples]})


def build_train_dataset(examples_path: Path, tok: Any, cfg: Any) -> tuple[Any, dict[str, Any]]:
    """The training order (length-bucketed batches, reshuffled per epoch) as a datasets.Dataset."""
    from datasets import Dataset

    from .batching import BatchStats, LengthBucketedBatches
    from .io import iter_jsonl

    t, b = cfg.train, cfg.data.batching
    examples = list(iter_jsonl(examples_path))
    if not examples:
        raise ConfigError(f"no training examples in {examples_path}")
    tokenized = tokenize_examples(examples, tok, cfg.model, t.max_length)
    per_epoch = math.ceil(len(examples) / t.batch_size)
    total_batches = t.max_steps * t.grad_accum if t.max_steps > 0 else math.ceil(t.epochs * per_epoch)
    rows: dict[str, list] = {"input_ids": [], "completion_mask": []}
    stats = BatchStats()
    epoch = n = 0
    while n < total_batches:
        for batch in LengthBucketedBatches(examples_path, t.batch_size, b.length_tolerance, t.seed,
                                           b.shuffle_buffer, epoch=epoch):
            if n >= total_batches:
                break
            for ex in batch:
                # real token lengths (after the chat template) for the padding statistics
                ex["n_tokens"] = len(tokenized[ex["id"]]["input_ids"])
                rows["input_ids"].append(tokenized[ex["id"]]["input_ids"])
                rows["completion_mask"].append(tokenized[ex["id"]]["completion_mask"])
            stats.add(batch)
            n += 1
        epoch += 1
    info = {"batches": n, "epochs_covered": epoch, "batches_per_epoch": per_epoch, **stats.as_dict()}
    return Dataset.from_dict(rows), info


# ------------------------------------------------------------------------------------- model
def load_trainable_model(cfg: Any, backend: str, device: str) -> tuple[Any, Any]:
    """(peft model, tokenizer) ready for training."""
    lora = cfg.lora
    targets = list(lora.target_modules)
    if backend == "unsloth":  # pragma: no cover - CUDA only, see README
        from unsloth import FastLanguageModel

        from .resources import resolve_model_path

        model, tok = FastLanguageModel.from_pretrained(
            model_name=resolve_model_path(cfg.model.path), max_seq_length=cfg.train.max_length, dtype=None,
            load_in_4bit=False, trust_remote_code=cfg.model.trust_remote_code)
        model = FastLanguageModel.get_peft_model(
            model, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
            use_rslora=lora.use_rslora, random_state=cfg.train.seed,
            use_gradient_checkpointing="unsloth" if cfg.train.gradient_checkpointing else False)
        from .tokenizer import load_tokenizer

        return model, load_tokenizer(cfg.model, cfg.data.cache_dir)

    from peft import LoraConfig, get_peft_model

    from .models import load_model, strip_gguf_quantization_marker

    model, tok, _ = load_model(cfg.model, cfg.data.cache_dir, for_training=True)
    strip_gguf_quantization_marker(model)
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = [m for m in targets if m not in present]
    if missing:
        raise ConfigError(f"lora.target_modules {missing} not found in {cfg.model.name}")
    peft_cfg = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                          use_rslora=lora.use_rslora, use_dora=lora.use_dora, bias="none", task_type="CAUSAL_LM")
    model = get_peft_model(model, peft_cfg)
    if cfg.train.gradient_checkpointing:
        model.enable_input_require_grads()
    return model, tok


# ----------------------------------------------------------------------------------- trainer
def make_trainer_class():
    """LeanSFTTrainer, defined lazily so importing this module does not import torch/trl."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import SequentialSampler
    from trl import SFTTrainer

    class LeanSFTTrainer(SFTTrainer):
        """SFTTrainer with (1) a sequential sampler over our pre-bucketed order and (2) a loss that
        projects only the labelled positions through the LM head (see module docstring)."""

        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            backbone = getattr(base, base.base_model_prefix, None)
            lm_head = base.get_output_embeddings()
            if backbone is None or lm_head is None or return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            labels = inputs["labels"]
            hidden = backbone(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                              use_cache=False).last_hidden_state
            shift_labels = labels[:, 1:]
            mask = shift_labels != -100
            logits = lm_head(hidden[:, :-1][mask]).float()
            loss_sum = F.cross_entropy(logits, shift_labels[mask], reduction="sum")
            n_tokens = mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = loss_sum / torch.as_tensor(n_tokens, device=loss_sum.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            mode = "train" if model.training else "eval"
            with torch.no_grad():
                acc = (logits.argmax(-1) == shift_labels[mask]).float().mean().item() if mask.any() else 0.0
            self._metrics[mode]["mean_token_accuracy"].append(acc)  # cheap: argmax over answer tokens only
            return loss

    return LeanSFTTrainer


# -------------------------------------------------------------------------------- checkpoints
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_is_valid(path: Path) -> bool:
    """trainer_state.json parses, the adapter's safetensors header parses, optimizer state exists."""
    import json
    import struct

    try:
        json.loads((path / "trainer_state.json").read_text())
        adapter = path / "adapter_model.safetensors"
        size = adapter.stat().st_size
        with open(adapter, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if 8 + n > size:  # a garbage header length: never read it
                return False
            json.loads(f.read(n))
        return (path / "optimizer.pt").is_file() and (path / "optimizer.pt").stat().st_size > 0
    except (OSError, ValueError, struct.error):
        return False


def newest_valid_checkpoint(ckpt_dir: Path) -> Path | None:
    if not ckpt_dir.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _CKPT.match(p.name)))
    for _step, path in reversed(found):
        if checkpoint_is_valid(path):
            return path
        log.warning("skipping corrupt checkpoint %s", path)
    return None
