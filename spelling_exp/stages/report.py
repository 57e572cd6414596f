"""Report stage: report.md + report.html in <run_dir>/report; prints the answer table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spelling_exp.analysis.compare import compare_evals, compare_with_control, comparison_table, read_comparison
from spelling_exp.analysis.report import write_report
from spelling_exp.config import Config, Stage, selected_stages
from spelling_exp.errors import ConfigError
from spelling_exp.stages.context import RunContext
from spelling_exp.storage.io import read_json
from spelling_exp.storage.layout import RunLayout, eval_finished, metrics_file


def check(config: Config, run_dir: Path) -> None:
    """Without the compare stage in the same job, the report compares what is there: this run's
    comparison, else the base and adapter evaluations (run earlier in the job, or given)."""
    stages, layout, c = set(selected_stages(config)), RunLayout(run_dir), config.compare
    if Stage.compare in stages or layout.comparison.is_file():
        return
    for stage, d in ((Stage.eval_base, layout.base_eval(c.base)), (Stage.eval_adapter, layout.adapter_eval(c.adapter))):
        if not (stage in stages and d == layout.stage_dir(stage)) and not eval_finished(d):
            raise ConfigError(f"stage=report: no comparison in {layout.compare} and no finished evaluation in {d}; "
                              f"run compare (or {stage}) first")


def _train_info(adapter: Path) -> dict[str, Any] | None:
    return read_json(adapter / "train_info.json") if (adapter / "train_info.json").is_file() else None


def run_report_stage(ctx: RunContext) -> Path:
    run_dir, cfg, layout, c = ctx.run_dir, ctx.cfg, RunLayout(ctx.run_dir), ctx.cfg.compare
    base, adapter, control_dir = (layout.base_eval(c.base), layout.adapter_eval(c.adapter),
                                  layout.control_eval(c.control))
    random_dir = layout.random_eval(c.random)
    if layout.comparison.is_file():
        comparison = read_comparison(layout.comparison)
    elif control_dir or random_dir:
        comparison = compare_with_control(base, adapter, control_dir, c.n_bootstrap, c.seed, random_dir=random_dir)
    else:
        comparison = compare_evals(base, adapter, c.n_bootstrap, c.seed)
    base_dir, adapter_dir = Path(comparison["base_dir"]), Path(comparison["adapter_dir"])
    for d in (base_dir, adapter_dir):
        if not eval_finished(d):
            raise ConfigError(f"report: no evaluation in {d}")
    adapter_path = layout.adapter
    log_history: list[dict[str, Any]] = []
    train_info = None
    if (adapter_path / "training_log.json").is_file():
        log_history = json.loads((adapter_path / "training_log.json").read_text())
    if (adapter_path / "train_info.json").is_file():
        train_info = read_json(adapter_path / "train_info.json")
    config_yaml = layout.resolved_config.read_text() if layout.resolved_config.exists() else ""
    title = cfg.report.title or f"spelling-exp: {cfg.experiment_name} ({cfg.model.name}, LoRA r={cfg.lora.r})"
    control = read_json(metrics_file(comparison["control_dir"])) if "control_dir" in comparison else None
    out = write_report(run_dir, title, comparison, read_json(metrics_file(base_dir)),
                       read_json(metrics_file(adapter_dir)), log_history, config_yaml, train_info,
                       dpi=cfg.report.dpi, control=control,
                       control_train_infos={"placebo adapter": _train_info(layout.control_adapter),
                                            "random-letters adapter": _train_info(layout.random_adapter)},
                       random=read_json(metrics_file(comparison["random_dir"])) if "random_dir" in comparison
                       else None)
    ctx.tracker.artifact(out, f"report-{run_dir.name}", "report")
    who = "base vs the control arms vs the spelling adapter" if "control" in comparison else "base vs LoRA adapter"
    print(f"\n== Answer: {who} on hold-out words ==\n")
    print(comparison_table(comparison))
    print(f"report: {out / 'report.html'}")
    return out
