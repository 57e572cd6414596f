"""Eval stages: `eval` (model.adapter_path as configured), `eval_base` (no adapter),
`eval_adapter` (the adapter trained in this run dir)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..context import RunContext
from ..errors import ConfigError
from ..evaluate import EvalResult, evaluate
from ..io import iter_jsonl


def _tracked(ctx: RunContext, result: EvalResult, label: str) -> EvalResult:
    """Per-task metrics and the per-question predictions go to the tracker."""
    m = result.metrics
    flat = {}
    for task, t in m["tasks"].items():
        for name in ("accuracy", "no_answer", "spelled_out", "lenient_accuracy"):
            flat[f"{label}/{task}/{name}"] = t[name]["rate"]
    flat[f"{label}/overall/accuracy"] = m["overall"]["accuracy"]["rate"]
    ctx.tracker.log(flat)
    ctx.tracker.summary(flat)
    questions = {q["id"]: q for q in iter_jsonl(result.dir / "questions.jsonl")}
    cols = ["id", "task", "word", "prompt", "answer", "sample", "reply", "parsed", "lenient", "spelled", "correct"]
    rows = [[p["id"], questions[p["id"]]["task"], questions[p["id"]]["word"], questions[p["id"]]["prompt"],
             questions[p["id"]]["answer"], p["sample"], p["reply"], p["parsed"], p["lenient"], p["spelled"],
             p["correct"]] for p in iter_jsonl(result.dir / "predictions.jsonl")]
    ctx.tracker.table(f"{label}/predictions", cols, rows)
    return result


def run_eval_stage(ctx: RunContext) -> EvalResult:
    cfg = ctx.cfg
    return _tracked(ctx, evaluate(cfg, ctx.run_dir / "eval", adapter=cfg.model.adapter_path, title="evaluation"),
                    "eval")


def run_eval_base_stage(ctx: RunContext) -> EvalResult:
    base = replace(ctx.cfg, model=replace(ctx.cfg.model, adapter_path=None))
    return _tracked(ctx, evaluate(base, ctx.run_dir / "eval_base", adapter=None, title="base model"), "eval_base")


def run_eval_adapter_stage(ctx: RunContext) -> EvalResult:
    adapter = ctx.cfg.model.adapter_path or str(ctx.run_dir / "train" / "adapter")
    if not (Path(adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"no trained adapter at {adapter}: run the train stage first or set model.adapter_path")
    return _tracked(ctx, evaluate(ctx.cfg, ctx.run_dir / "eval_adapter", adapter=adapter, title="LoRA adapter"),
                    "eval_adapter")
