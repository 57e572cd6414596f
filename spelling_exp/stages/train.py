"""Train stages: the spelling LoRA adapter in <run_dir>/train/adapter and, for `train_control`,
the placebo adapter (shuffled spellings, everything else identical) in <run_dir>/train_control/adapter.
The training curve goes to the tracker."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from spelling_exp.config import Config, Spellings, Stage
from spelling_exp.stages.context import RunContext
from spelling_exp.storage.layout import RunLayout
from spelling_exp.tracking import Tracker
from spelling_exp.training.recipe import TrainJob, TrainResult, train, validate_train_config


def check(config: Config, run_dir: Path) -> None:
    """The training and LoRA config; an explicit train.resume must be a valid checkpoint; the LoRA
    target modules exist in the model (read from its config, no weights loaded)."""
    from spelling_exp.training.model import check_target_modules

    validate_train_config(config.train, config.lora)
    check_target_modules(config.lora, config.model)


def log_train_record(tracker: Tracker, record: dict[str, Any], step: int, prefix: str = "train") -> None:
    data = {f"{prefix}/{k}": v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
    if data:
        tracker.log({**data, f"{prefix}/global_step": step})


def _train(ctx: RunContext, name: str, spellings: Spellings | None) -> TrainResult:
    c = ctx.cfg
    data = ctx.prepare_data(spellings)
    job = TrainJob(c.model, c.lora, c.train, data.dir, RunLayout(ctx.run_dir).stage_dir(name), c.paths.cache_dir)
    result = train(job, data.key, on_log=lambda record, step: log_train_record(ctx.tracker, record, step, name))
    if result.cache_hit:  # the curve belongs to this run too
        for record in result.log_history():
            log_train_record(ctx.tracker, record, record.get("step", 0), name)
    info = result.info
    ctx.tracker.summary({f"{name}/steps": info["steps"], f"{name}/final_loss": info["final_loss"],
                         f"{name}/padding_fraction": info["batching"]["padding_fraction"],
                         f"{name}/cache_hit": result.cache_hit})
    return result


def run_train_stage(ctx: RunContext) -> TrainResult:
    return _train(ctx, Stage.train, None)


def run_train_control_stage(ctx: RunContext) -> TrainResult:
    """The placebo arm: same seed, templates, words, steps; letters of each word shuffled."""
    return _train(ctx, Stage.train_control, Spellings.shuffled)


def run_train_random_stage(ctx: RunContext) -> TrainResult:
    """The format-only arm: same seed, templates, words, steps and token counts; random letters."""
    return _train(ctx, Stage.train_random, Spellings.random)
