"""Train stage: LoRA adapter in <run_dir>/train/adapter; the training curve goes to the tracker."""
from __future__ import annotations

from typing import Any

from spelling_exp.stages.context import RunContext
from spelling_exp.tracking import Tracker
from spelling_exp.training.recipe import TrainResult, train


def log_train_record(tracker: Tracker, record: dict[str, Any], step: int) -> None:
    data = {f"train/{k}": v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
    if data:
        tracker.log({**data, "train/global_step": step})


def run_train_stage(ctx: RunContext) -> TrainResult:
    c = ctx.cfg
    data = ctx.prepare_data()
    result = train(c.model, c.lora, c.train, data.dir, data.key, ctx.run_dir / "train", c.paths.cache_dir,
                   on_log=lambda record, step: log_train_record(ctx.tracker, record, step))
    if result.cache_hit:  # the curve belongs to this run too
        for record in result.log_history():
            log_train_record(ctx.tracker, record, record.get("step", 0))
    info = result.info
    ctx.tracker.summary({"train/steps": info["steps"], "train/final_loss": info["final_loss"],
                         "train/padding_fraction": info["batching"]["padding_fraction"],
                         "train/cache_hit": result.cache_hit})
    return result
