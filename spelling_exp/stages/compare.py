"""Compare stage: paired statistics of two evaluations in <run_dir>/compare, or with
sweep_dir=<dir> the cross-run comparison report of a whole sweep."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from spelling_exp.analysis.compare import compare_evals, compare_with_control, comparison_table, write_comparison
from spelling_exp.errors import ConfigError
from spelling_exp.stages.context import RunContext
from spelling_exp.storage.io import atomic_write_text


def control_eval_dir(ctx: RunContext) -> Path | None:
    """The placebo adapter's evaluation: compare.control, else this run's eval_control if it finished."""
    if ctx.cfg.compare.control:
        return Path(ctx.cfg.compare.control)
    d = ctx.run_dir / "eval_control"
    return d if (d / "metrics.json").is_file() else None


def run_compare_stage(ctx: RunContext) -> dict[str, Any]:
    if ctx.cfg.sweep_dir:  # cross-run comparison of a whole sweep
        from spelling_exp.analysis.sweep_report import write_sweep_report

        sweep = Path(ctx.cfg.sweep_dir)
        if not sweep.is_dir():
            raise ConfigError(f"sweep_dir {sweep} does not exist")
        out = write_sweep_report(sweep)
        print((out / "comparison.md").read_text())
        return {"sweep_report": str(out / "comparison.html")}
    run_dir, c = ctx.run_dir, ctx.cfg.compare
    base = Path(c.base) if c.base else run_dir / "eval_base"
    adapter = Path(c.adapter) if c.adapter else run_dir / "eval_adapter"
    control = control_eval_dir(ctx)
    if control:
        result = compare_with_control(base, adapter, control, n_boot=c.n_bootstrap, seed=c.seed)
    else:
        result = compare_evals(base, adapter, n_boot=c.n_bootstrap, seed=c.seed)
    out = run_dir / "compare"
    write_comparison(result, out)
    table = comparison_table(result)
    heading = "## Base vs placebo vs spelling adapter (paired)" if control else "## Base vs adapter (paired)"
    atomic_write_text(out / "comparison.md", f"{heading}\n\n" + table)
    print(table)
    flat = {}
    for task, e in result["tasks"].items():
        for k in ("base", "adapter", "diff", "p", "p_holm", "mde80"):
            flat[f"compare/{task}/{k}"] = e["strict"][k]
        flat[f"compare/{task}/lenient_diff"] = e["lenient"]["diff"]
        if control:
            sp = result["control"]["spelling_vs_placebo"]["tasks"][task]["strict"]
            for k in ("base", "diff", "p", "p_holm", "mde80"):
                flat[f"compare/spelling_vs_placebo/{task}/{'placebo' if k == 'base' else k}"] = sp[k]
    ctx.tracker.log(flat)
    ctx.tracker.summary(flat)
    return result
