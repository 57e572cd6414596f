"""Compare stage: paired statistics of two evaluations, written to <run_dir>/compare."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..compare import compare_evals, comparison_table
from ..context import RunContext
from ..io import atomic_write_json, atomic_write_text


def run_compare_stage(ctx: RunContext) -> dict[str, Any]:
    if ctx.cfg.sweep_dir:  # cross-run comparison of a whole sweep
        from ..sweep_report import write_sweep_report

        sweep = Path(ctx.cfg.sweep_dir)
        if not sweep.is_dir():
            from ..errors import ConfigError

            raise ConfigError(f"sweep_dir {sweep} does not exist")
        out = write_sweep_report(sweep)
        print((out / "comparison.md").read_text())
        return {"sweep_report": str(out / "comparison.html")}
    run_dir, c = ctx.run_dir, ctx.cfg.compare
    base = Path(c.base) if c.base else run_dir / "eval_base"
    adapter = Path(c.adapter) if c.adapter else run_dir / "eval_adapter"
    result = compare_evals(base, adapter, n_boot=c.n_bootstrap, seed=c.seed)
    out = run_dir / "compare"
    atomic_write_json(out / "comparison.json", result)
    table = comparison_table(result)
    atomic_write_text(out / "comparison.md", "## Base vs adapter (paired)\n\n" + table)
    print(table)
    flat = {}
    for task, e in result["tasks"].items():
        for k in ("base", "adapter", "diff", "p_mcnemar"):
            flat[f"compare/{task}/{k}"] = e["strict"][k]
        flat[f"compare/{task}/lenient_diff"] = e["lenient"]["diff"]
    ctx.tracker.log(flat)
    ctx.tracker.summary(flat)
    return result
