"""Report stage: report.md + report.html in <run_dir>/report; prints the answer table."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..compare import compare_evals, comparison_table
from ..context import RunContext
from ..errors import ConfigError
from ..io import read_json
from ..report import write_report


def run_report_stage(ctx: RunContext) -> Path:
    run_dir, cfg = ctx.run_dir, ctx.cfg
    cmp_path = run_dir / "compare" / "comparison.json"
    if cmp_path.is_file():
        comparison = read_json(cmp_path)
    else:
        comparison = compare_evals(run_dir / "eval_base", run_dir / "eval_adapter", cfg.compare.n_bootstrap,
                                   cfg.compare.seed)
    base_dir, adapter_dir = Path(comparison["base_dir"]), Path(comparison["adapter_dir"])
    for d in (base_dir, adapter_dir):
        if not (d / "metrics.json").is_file():
            raise ConfigError(f"report: no evaluation in {d}")
    adapter_path = Path(cfg.model.adapter_path) if cfg.model.adapter_path else run_dir / "train" / "adapter"
    log_history: list[dict[str, Any]] = []
    train_info = None
    if (adapter_path / "training_log.json").is_file():
        log_history = json.loads((adapter_path / "training_log.json").read_text())
    if (adapter_path / "train_info.json").is_file():
        train_info = read_json(adapter_path / "train_info.json")
    config_yaml = (run_dir / "resolved_config.yaml").read_text() if (run_dir / "resolved_config.yaml").exists() else ""
    out = write_report(run_dir, f"spelling-exp: {cfg.experiment_name} ({cfg.model.name}, LoRA r={cfg.lora.r})",
                       comparison, read_json(base_dir / "metrics.json"), read_json(adapter_dir / "metrics.json"),
                       log_history, config_yaml, train_info)
    ctx.tracker.artifact(out, f"report-{run_dir.name}", "report")
    print("\n== Answer: base vs LoRA adapter on hold-out words ==\n")
    print(comparison_table(comparison))
    print(f"report: {out / 'report.html'}")
    return out
