"""One training job: what to train, from which data, where.

The recipe's steps take a ``TrainJob`` instead of the same six arguments each, and it is the
request a fresh training process receives (``isolation.py``), so it stays frozen and picklable.
It holds nothing of the cache key: the recipe keys model, LoRA and train settings and the data's
key (``recipe.train_payload``), never the paths.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spelling_exp.config import LoraConfig, ModelConfig, TrainConfig

LogFn = Callable[[dict[str, Any], int], None]  # a trainer log record and its step (the tracker's curve)


@dataclass(frozen=True)
class TrainJob:
    model: ModelConfig
    lora: LoraConfig
    train: TrainConfig
    data_dir: Path  # examples_train.jsonl (+ examples_val.jsonl)
    out: Path  # checkpoints/ and adapter/ go here
    cache_dir: str  # the project cache: model downloads, the train cache
