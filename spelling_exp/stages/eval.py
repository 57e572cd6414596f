"""Eval stages: `eval` (eval.adapter_path, or the base model), `eval_base` (no adapter),
`eval_adapter` (the adapter trained in this run dir, never a configured one), `eval_control`
(the placebo adapter trained in this run dir), `eval_random` (the random-letters adapter). All on
the same hold-out questions."""
from __future__ import annotations

from pathlib import Path

from spelling_exp.config import Config, Stage, selected_stages
from spelling_exp.errors import ConfigError
from spelling_exp.evaluation.recipe import EvalResult, evaluate
from spelling_exp.stages.context import RunContext
from spelling_exp.storage.io import iter_jsonl
from spelling_exp.storage.layout import RunLayout

# The eval stages that evaluate the adapter a train stage of this run dir left.
TRAINED_BY = {Stage.eval_adapter: Stage.train, Stage.eval_control: Stage.train_control,
              Stage.eval_random: Stage.train_random}


def check(config: Config, run_dir: Path) -> None:
    """The eval config and its backend; eval.questions_file parsed and every answer verified; the
    adapter each selected eval stage evaluates is there (or trained earlier in the same run)."""
    from spelling_exp.evaluation.backends import validate_backend_config
    from spelling_exp.evaluation.questions import validate_eval_config
    from spelling_exp.model.loading import check_merge_dtype

    e, stages = config.eval, {Stage(s) for s in selected_stages(config)}
    validate_eval_config(e)
    if e.questions_file:  # parse and verify every answer now; the overlap check needs the data
        from spelling_exp.evaluation.external import read_questions_file

        read_questions_file(e)
    adapter = e.adapter_path if Stage.eval in stages else None
    validate_backend_config(e, config.model, evaluates_adapter=bool(stages & TRAINED_BY.keys() or adapter))
    if e.merge_adapter:
        check_merge_dtype(str(config.model.dtype))
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"eval.adapter_path={adapter}: no LoRA adapter there (adapter_config.json missing)")
    for stage, train_stage in TRAINED_BY.items():
        if stage in stages and train_stage not in stages:
            _run_dir_adapter(RunLayout(run_dir), train_stage)


def _evaluate(ctx: RunContext, name: str, adapter: str | None, title: str) -> EvalResult:
    c = ctx.cfg
    data = ctx.prepare_data()
    out = RunLayout(ctx.run_dir).stage_dir(name)
    result = evaluate(c.eval, c.model, data.dir / f"holdout_{c.eval.split}.jsonl", out, c.paths.cache_dir,
                      adapter=adapter, title=title,
                      training_words=data.dir / "english_tokens.json")  # eval.questions_file's overlap check
    _track(ctx, result, name)
    return result


def _track(ctx: RunContext, result: EvalResult, label: str) -> None:
    """Per-task metrics and the per-question predictions go to the tracker."""
    m = result.metrics
    flat = {}
    for task, t in m["tasks"].items():
        for name in ("accuracy", "no_answer", "ambiguous", "spelled_out", "truncated", "right_only_in_spelling"):
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
    return _evaluate(ctx, Stage.eval, adapter, "LoRA adapter" if adapter else "base model")


def run_eval_base_stage(ctx: RunContext) -> EvalResult:
    return _evaluate(ctx, Stage.eval_base, None, "base model")


def _run_dir_adapter(layout: RunLayout, train_stage: str) -> str:
    """The adapter ``train_stage`` left in this run dir; checked up front (check) when that stage is
    not selected, and again when the eval starts (the train stage may have failed to leave one)."""
    adapter = layout.adapter_of(train_stage)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(f"no trained adapter at {adapter}: run the {train_stage} stage first, or evaluate an "
                          "existing adapter with stage=eval eval.adapter_path=<dir>")
    return str(adapter)


def run_eval_adapter_stage(ctx: RunContext) -> EvalResult:
    return _evaluate(ctx, Stage.eval_adapter, _run_dir_adapter(RunLayout(ctx.run_dir), Stage.train), "LoRA adapter")


def run_eval_control_stage(ctx: RunContext) -> EvalResult:
    return _evaluate(ctx, Stage.eval_control, _run_dir_adapter(RunLayout(ctx.run_dir), Stage.train_control),
                     "placebo adapter")


def run_eval_random_stage(ctx: RunContext) -> EvalResult:
    return _evaluate(ctx, Stage.eval_random, _run_dir_adapter(RunLayout(ctx.run_dir), Stage.train_random),
                     "random-letters adapter")
