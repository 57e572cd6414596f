"""Eval stages: `eval` (model.adapter_path as configured), `eval_base` (no adapter),
`eval_adapter` (the adapter trained in this run dir)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..evaluate import EvalResult, evaluate


def run_eval_stage(cfg: Any, run_dir: Path) -> EvalResult:
    return evaluate(cfg, run_dir / "eval", adapter=cfg.model.adapter_path, title="evaluation")


def run_eval_base_stage(cfg: Any, run_dir: Path) -> EvalResult:
    base = replace(cfg, model=replace(cfg.model, adapter_path=None))
    return evaluate(base, run_dir / "eval_base", adapter=None, title="base model")


def run_eval_adapter_stage(cfg: Any, run_dir: Path) -> EvalResult:
    adapter = cfg.model.adapter_path or str(run_dir / "train" / "adapter")
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"no trained adapter at {adapter}: run the train stage first or set model.adapter_path")
    return evaluate(cfg, run_dir / "eval_adapter", adapter=adapter, title="LoRA adapter")
