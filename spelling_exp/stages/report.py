"""Report stage: report.md + report.html in <run_dir>/report; prints the answer table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from spelling_exp.analysis.compare import (
    COMPARISON_FILE,
    compare_evals,
    compare_with_control,
    comparison_table,
    read_comparison,
)
from spelling_exp.analysis.report import write_report
from spelling_exp.errors import ConfigError
from spelling_exp.stages.context import RunContext
from spelling_exp.storage.io import read_json


def run_report_stage(ctx: RunContext) -> Path:
    run_dir, cfg = ctx.run_dir, ctx.cfg
    cmp_path = run_dir / "compare" / COMPARISON_FILE
    if cmp_path.is_file():
        comparison = read_comparison(cmp_path)
    elif (run_dir / "eval_control" / "metrics.json").is_file():
        comparison = compare_with_control(run_dir / "eval_base", run_dir / "eval_adapter", run_dir / "eval_control",
                                          cfg.compare.n_bootstrap, cfg.compare.seed)
    else:
        comparison = compare_evals(run_dir / "eval_base", run_dir / "eval_adapter", cfg.compare.n_bootstrap,
                                   cfg.compare.seed)
    base_dir, adapter_dir = Path(comparison["base_dir"]), Path(comparison["adapter_dir"])
    for d in (base_dir, adapter_dir):
        if not (d / "metrics.json").is_file():
            raise ConfigError(f"report: no evaluation in {d}")
    adapter_path = run_dir / "train" / "adapter"
    log_history: list[dict[str, Any]] = []
    train_info = None
    if (adapter_path / "training_log.json").is_file():
        log_history = json.loads((adapter_path / "training_log.json").read_text())
    if (adapter_path / "train_info.json").is_file():
        train_info = read_json(adapter_path / "train_info.json")
    config_yaml = (run_dir / "resolved_config.yaml").read_text() if (run_dir / "resolved_config.yaml").exists() else ""
    title = cfg.report.title or f"spelling-exp: {cfg.experiment_name} ({cfg.model.name}, LoRA r={cfg.lora.r})"
    control = read_json(Path(comparison["control_dir"]) / "metrics.json") if "control_dir" in comparison else None
    out = write_report(run_dir, title, comparison, read_json(base_dir / "metrics.json"),
                       read_json(adapter_dir / "metrics.json"), log_history, config_yaml, train_info,
                       dpi=cfg.report.dpi, control=control)
    ctx.tracker.artifact(out, f"report-{run_dir.name}", "report")
    who = "base vs placebo vs spelling adapter" if control else "base vs LoRA adapter"
    print(f"\n== Answer: {who} on hold-out words ==\n")
    print(comparison_table(comparison))
    print(f"report: {out / 'report.html'}")
    return out
