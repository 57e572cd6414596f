"""Training data as the trainer sees it: pre-tokenized (prompt, completion) pairs in bucketed order.

Each spelling example is split into (prompt, completion) by ``model.chat.split_prompt_completion``:
the prompt is *exactly* the generation prompt evaluation uses (for Qwen3 it ends with the empty
think block), the completion is the answer plus the end-of-turn token. We tokenize the two parts
separately and concatenate, so the prompt ids at training time are the evaluation prompt ids,
and pass TRL a pre-tokenized dataset with ``completion_mask``: TRL builds the labels (loss on
the answer only) and pads batches with its own collator.

Order. We use this project's length-bucketed loader (``training/batching.py``) rather than
transformers' ``group_by_length``: the loader's windows bound the within-batch length spread by a
tolerance (padding ~2% here vs. what a random sampler gives), it is seeded per epoch, and the
exact batch order is a plain dataset in file order, so a resumed run replays the same batches.
The trainer reads that order with a sequential sampler. The same ``train`` settings
(batch_size, length_tolerance, shuffle_buffer, seed) give the order and its statistics.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from spelling_exp.config import ModelConfig, TrainConfig
from spelling_exp.errors import ConfigError
from spelling_exp.model.chat import build_messages, split_prompt_completion
from spelling_exp.storage.io import iter_jsonl


def tokenize_examples(examples: list[dict[str, Any]], tok: Any, model_cfg: ModelConfig,
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


def build_val_dataset(examples_path: Path, tok: Any, model_cfg: ModelConfig, max_length: int) -> Any:
    """Validation spelling examples (words disjoint from training words), for the eval loss."""
    from datasets import Dataset

    examples = list(iter_jsonl(examples_path))
    tokenized = tokenize_examples(examples, tok, model_cfg, max_length)
    return Dataset.from_dict({"input_ids": [tokenized[e["id"]]["input_ids"] for e in examples],
                              "completion_mask": [tokenized[e["id"]]["completion_mask"] for e in examples]})


def build_train_dataset(examples_path: Path, tok: Any, model_cfg: ModelConfig,
                        t: TrainConfig) -> tuple[Any, dict[str, Any]]:
    """The training order (length-bucketed batches, reshuffled per epoch) as a datasets.Dataset,
    and the batching statistics of exactly that order."""
    from datasets import Dataset

    from spelling_exp.training.batching import BatchStats, LengthBucketedBatches

    examples = list(iter_jsonl(examples_path))
    if not examples:
        raise ConfigError(f"no training examples in {examples_path}")
    tokenized = tokenize_examples(examples, tok, model_cfg, t.max_length)
    per_epoch = math.ceil(len(examples) / t.batch_size)
    total_batches = t.max_steps * t.grad_accum if t.max_steps else math.ceil(t.epochs * per_epoch)
    rows: dict[str, list] = {"input_ids": [], "completion_mask": []}
    stats = BatchStats()
    epoch = n = 0
    while n < total_batches:
        for batch in LengthBucketedBatches(examples_path, t.batch_size, t.length_tolerance, t.seed,
                                           t.shuffle_buffer, epoch=epoch):
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
