"""Eval stages: `eval` (eval.adapter_path, or the base model), `eval_base` (no adapter),
`eval_adapter` (the adapter trained in this run dir, never a configured one), `eval_control`
(the placebo adapter trained in this run dir). All on the same hold-out questions."""
from __future__ import annotations

from spelling_exp.errors import ConfigError
from spelling_exp.evaluation.recipe import EvalResult, evaluate
from spelling_exp.stages.context import RunContext
from spelling_exp.storage.io import iter_jsonl


def _evaluate(ctx: RunContext, name: str, adapter: str | None, title: str) -> EvalResult:
    c = ctx.cfg
    data = ctx.prepare_data()
    result = evaluate(c.eval, c.model, data.dir / f"holdout_{c.eval.split}.jsonl", ctx.run_dir / name,
                      c.paths.cache_dir, adapter=adapter, title=title,
                      training_words=data.dir / "english_tokens.json")  # eval.questions_file's overlap check
    _track(ctx, result, name)
    return result


def _track(ctx: RunContext, result: EvalResult, label: str) -> None:
    """Per-task metrics and the per-question predictions go to the tracker."""
    m = result.metrics
    flat = {}
    for task, t in m["tasks"].items():
        for name in ("accuracy", "no_answer", "ambiguous", "spelled_out", "truncated", "lenient_accuracy"):
            flat[f"{label}/{task}/{name}"] = t[name]["rate"]
    flat[f"{label}/overall/accuracy"] = m["overall"]["accuracy"]["rate"]
    ctx.tracker.log(flat)
    ctx.tracker.summary(flat)
    questions = {q["id"]: q for q in iter_jsonl(result.dir / "questions.jsonl")}
    cols = ["id", "task", "word", "prompt", "answer", "sample", "reply", "truncated", "parsed", "ambiguous", "lenient",
            "spelled", "correct"]
    rows = [[p["id"], questions[p["id"]]["task"], questions[p["id"]]["word"], questions[p["id"]]["prompt"],
             questions[p["id"]]["answer"], p["sample"], p["reply"], p["truncated"], p["parsed"], p["ambiguous"],
             p["lenient"], p["spelled"], p["correct"]] for p in iter_jsonl(result.dir / "predictions.jsonl")]
    ctx.tracker.table(f"{label}/predictions", cols, rows)


def run_eval_stage(ctx: RunContext) -> EvalResult:
    adapter = ctx.cfg.eval.adapter_path
    return _evaluate(ctx, "eval", adapter, "LoRA adapter" if adapter else "base model")


def run_eval_base_stage(ctx: RunContext) -> EvalResult:
    return _evaluate(ctx, "eval_base", None, "base model")


def _run_dir_adapter(ctx: RunContext, train_stage: str) -> str:
    adapter = ctx.run_dir / train_stage / "adapter"
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"no trained adapter at {adapter}: run the {train_stage} stage first, or evaluate an "
                          "existing adapter with stage=eval eval.adapter_path=<dir>")
    return str(adapter)


def run_eval_adapter_stage(ctx: RunContext) -> EvalResult:
    return _evaluate(ctx, "eval_adapter", _run_dir_adapter(ctx, "train"), "LoRA adapter")


def run_eval_control_stage(ctx: RunContext) -> EvalResult:
    return _evaluate(ctx, "eval_control", _run_dir_adapter(ctx, "train_control"), "placebo adapter")
