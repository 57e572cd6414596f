"""Compare stage: paired statistics of two evaluations in <run_dir>/compare, or with
sweep_dir=<dir> the cross-run comparison report of a whole sweep."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from spelling_exp.analysis.compare import compare_arms, comparison_table, write_comparison
from spelling_exp.analysis.plan import declared_plan
from spelling_exp.config import Config, Stage, selected_stages
from spelling_exp.errors import ConfigError
from spelling_exp.stages.context import RunContext
from spelling_exp.storage.io import atomic_write_text
from spelling_exp.storage.layout import RunLayout, SweepLayout, eval_finished


def check(config: Config, run_dir: Path) -> None:
    """The evaluations to compare are finished, or run earlier in the same job: compare.base /
    compare.adapter / compare.control as given, else this run's eval_base and eval_adapter. With
    sweep_dir: that dir exists (the cross-run report reads whatever jobs it holds)."""
    if config.sweep_dir:
        if not Path(config.sweep_dir).is_dir():
            raise ConfigError(f"sweep_dir={config.sweep_dir}: no such directory; set it to a sweep dir "
                              "(multirun/<experiment>/<id>)")
        return
    c, stages, layout = config.compare, set(selected_stages(config)), RunLayout(run_dir)
    for key, path, stage in (("compare.base", c.base, Stage.eval_base), ("compare.adapter", c.adapter,
                                                                      Stage.eval_adapter)):
        if path and not eval_finished(path):
            raise ConfigError(f"{key}={path}: no finished evaluation there (metrics.json missing)")
        if not path and stage not in stages and not eval_finished(layout.stage_dir(stage)):
            raise ConfigError(f"stage=compare: no {stage} evaluation in {run_dir}; set {key}=<eval dir> "
                              f"(and the other of compare.base / compare.adapter), or run {stage} first")
    for key, path in (("compare.control", c.control), ("compare.random", c.random)):
        if path and not eval_finished(path):
            raise ConfigError(f"{key}={path}: no finished evaluation there (metrics.json missing)")
    arms = {"compare.base": layout.base_eval(c.base), "compare.adapter": layout.adapter_eval(c.adapter),
            "compare.control": Path(c.control) if c.control else None,
            "compare.random": Path(c.random) if c.random else None}
    seen: dict[Path, str] = {}
    for key, path in arms.items():
        if path is None:
            continue
        if (where := path.resolve()) in seen:  # an evaluation compared with itself: a comparison of nothing
            raise ConfigError(f"{key}={path}: the same evaluation as {seen[where]}; compare two different "
                              "evaluations (e.g. compare.base=<base eval dir> compare.adapter=<adapter eval dir>)")
        seen[where] = key


def analysis_plan(ctx: RunContext) -> dict[str, Any]:
    """The declared plan: a control is expected when this run trains one or names one."""
    return declared_plan(ctx.cfg)


def run_compare_stage(ctx: RunContext) -> dict[str, Any]:
    if ctx.cfg.sweep_dir:  # cross-run comparison of a whole sweep
        from spelling_exp.analysis.sweep_report import write_sweep_report

        out = SweepLayout(write_sweep_report(Path(ctx.cfg.sweep_dir)))  # check() saw the dir exists
        print(out.comparison_md.read_text())
        return {"sweep_report": str(out.comparison_html)}
    c, layout = ctx.cfg.compare, RunLayout(ctx.run_dir)
    base, adapter = layout.base_eval(c.base), layout.adapter_eval(c.adapter)
    plan = analysis_plan(ctx)
    control_dir = Path(c.control) if c.control else layout.eval_control
    random_dir = Path(c.random) if c.random else layout.eval_random
    result = compare_arms(base, adapter, control_dir, plan, n_boot=c.n_bootstrap, seed=c.seed,
                          random_dir=random_dir)
    control = "control" in result  # compare_arms decided whether the control arm is in the comparison
    out = layout.compare
    write_comparison(result, out)
    table = comparison_table(result)
    heading = "## Base vs the control arms vs the spelling adapter (paired)" if control else \
        "## Base vs adapter (paired)"
    atomic_write_text(layout.comparison_md, f"{heading}\n\n" + table)
    print(table)
    flat = {}
    for task, e in result["tasks"].items():
        for k in ("base", "adapter", "diff", "p", "p_holm", "mde80"):
            flat[f"compare/{task}/{k}"] = e["strict"].get(k)
        fmt = e["format"]
        flat[f"compare/{task}/no_answer_diff"] = fmt["no_answer"]["diff"]
        flat[f"compare/{task}/bound_worst"] = fmt["bounds"]["worst"]["diff"]
        flat[f"compare/{task}/bound_best"] = fmt["bounds"]["best"]["diff"]
        for name, contrast in result.get("control", {}).items():  # every control contrast that ran
            s = contrast["tasks"][task]["strict"]
            for k in ("base", "adapter", "diff", "p", "p_holm", "mde80"):
                flat[f"compare/{name}/{task}/{k}"] = s.get(k)
    flat["compare/plan_hash"] = plan["hash"]
    ctx.tracker.log(flat)
    ctx.tracker.summary(flat)
    return result
