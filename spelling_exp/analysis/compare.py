"""Paired comparison of two evaluations on the same questions (e.g. base vs adapter).

Per task and overall: both accuracies, the difference with a paired bootstrap 95% CI
(resampling questions), and McNemar's exact p-value on the per-question outcomes (first
sample of each question). Strict accuracy is the headline; the lenient reading and the
no-answer / spelled-out rates sit beside it so format drift is visible.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spelling_exp.analysis.stats import mcnemar_exact, paired_bootstrap_ci
from spelling_exp.config import Task
from spelling_exp.errors import ConfigError
from spelling_exp.storage.io import atomic_write_json, iter_jsonl, read_json

ALPHA = 0.05
TASK_ORDER = tuple(str(t) for t in Task)
COMPARISON_FILE = "comparison.json"


def _per_question(pred_path: Path, field: str) -> tuple[dict[str, float], dict[str, bool]]:
    """(mean over samples, first-sample outcome) per question id."""
    sums: dict[str, list[float]] = {}
    first: dict[str, bool] = {}
    for r in iter_jsonl(pred_path):
        sums.setdefault(r["id"], []).append(float(r[field]))
        if r["sample"] == 0:
            first[r["id"]] = bool(r[field])
    return {k: sum(v) / len(v) for k, v in sums.items()}, first


def _paired(ids: list[str], base: tuple, adapter: tuple, n_boot: int, seed: int) -> dict[str, Any]:
    a = [base[0][i] for i in ids]
    b = [adapter[0][i] for i in ids]
    diff, lo, hi = paired_bootstrap_ci(a, b, n_boot=n_boot, seed=seed)
    b_only = sum(1 for i in ids if base[1][i] and not adapter[1][i])
    a_only = sum(1 for i in ids if adapter[1][i] and not base[1][i])
    return {"n": len(ids), "base": sum(a) / len(a), "adapter": sum(b) / len(b), "diff": diff, "ci95": [lo, hi],
            "base_only_correct": b_only, "adapter_only_correct": a_only, "p_mcnemar": mcnemar_exact(b_only, a_only)}


def ordered_tasks(c: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Tasks in canonical order (JSON round-trips sort keys alphabetically)."""
    return sorted(c["tasks"].items(), key=lambda kv: TASK_ORDER.index(kv[0]))


def verdict(task: str, s: dict[str, Any]) -> str:
    pts = 100 * s["diff"]
    ci = f"{100 * s['ci95'][0]:+.1f} to {100 * s['ci95'][1]:+.1f} points"
    if s["p_mcnemar"] < ALPHA and s["diff"] > 0:
        return f"{task}: the adapter is better by {pts:+.1f} points (95% CI {ci}, McNemar p={s['p_mcnemar']:.3g})."
    if s["p_mcnemar"] < ALPHA and s["diff"] < 0:
        return f"{task}: the adapter is worse by {pts:+.1f} points (95% CI {ci}, McNemar p={s['p_mcnemar']:.3g})."
    return (f"{task}: no significant difference ({pts:+.1f} points, 95% CI {ci}, "
            f"McNemar p={s['p_mcnemar']:.3g}).")


def compare_evals(base_dir: Path, adapter_dir: Path, n_boot: int = 10000, seed: int = 0) -> dict[str, Any]:
    for d in (base_dir, adapter_dir):
        if not (d / "metrics.json").is_file():
            raise ConfigError(f"no finished evaluation in {d} (metrics.json missing): set compare.base=<eval dir> "
                              "and compare.adapter=<eval dir>, or run eval_base and eval_adapter first")
    qa = {q["id"]: q for q in iter_jsonl(base_dir / "questions.jsonl")}
    qb = {q["id"]: q for q in iter_jsonl(adapter_dir / "questions.jsonl")}
    if qa != qb:
        raise ConfigError(f"{base_dir} and {adapter_dir} asked different questions; a paired comparison needs the same")
    tasks = sorted({q["task"] for q in qa.values()}, key=TASK_ORDER.index)
    out: dict[str, Any] = {"base_dir": str(base_dir), "adapter_dir": str(adapter_dir), "tasks": {}}
    readings = {}
    for field in ("correct", "lenient_correct"):
        readings[field] = (_per_question(base_dir / "predictions.jsonl", field),
                           _per_question(adapter_dir / "predictions.jsonl", field))
    mb, ma = read_json(base_dir / "metrics.json"), read_json(adapter_dir / "metrics.json")
    for scope in [*tasks, "overall"]:
        ids = sorted(i for i, q in qa.items() if scope == "overall" or q["task"] == scope)
        strict = _paired(ids, *readings["correct"], n_boot, seed)
        lenient = _paired(ids, *readings["lenient_correct"], n_boot, seed)
        entry = {"strict": strict, "lenient": lenient}
        if scope == "overall":
            out["overall"] = entry
        else:
            entry["no_answer"] = {"base": mb["tasks"][scope]["no_answer"]["rate"],
                                  "adapter": ma["tasks"][scope]["no_answer"]["rate"]}
            entry["spelled_out"] = {"base": mb["tasks"][scope]["spelled_out"]["rate"],
                                    "adapter": ma["tasks"][scope]["spelled_out"]["rate"]}
            entry["verdict"] = verdict(scope, strict)
            out["tasks"][scope] = entry
    return out


def write_comparison(comparison: dict[str, Any], out_dir: Path) -> Path:
    """``<out_dir>/comparison.json`` with the eval dirs stored relative to it, so a run dir (or a
    whole sweep) can be moved or copied and its report still finds its evaluations."""
    rel = {k: os.path.relpath(Path(comparison[k]).resolve(), Path(out_dir).resolve())
           for k in ("base_dir", "adapter_dir")}
    path = Path(out_dir) / COMPARISON_FILE
    atomic_write_json(path, {**comparison, **rel})
    return path


def read_comparison(path: Path) -> dict[str, Any]:
    """A comparison.json with its eval dirs resolved against where the file is now."""
    c = read_json(path)
    for k in ("base_dir", "adapter_dir"):
        if k in c:  # an absolute path (older files) stays as it is
            c[k] = str((Path(path).parent / c[k]).resolve())
    return c


def comparison_table(c: dict[str, Any]) -> str:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    lines = ["| task | n | base | adapter | diff [95% CI] | McNemar p | lenient base → adapter | "
             "no answer base → adapter | spells out base → adapter |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task, e in ordered_tasks(c):
        s, le = e["strict"], e["lenient"]
        lines.append(
            f"| {task} | {s['n']} | {pct(s['base'])} | {pct(s['adapter'])} | {100 * s['diff']:+.1f} "
            f"[{100 * s['ci95'][0]:+.1f}, {100 * s['ci95'][1]:+.1f}] | {s['p_mcnemar']:.3g} | "
            f"{pct(le['base'])} → {pct(le['adapter'])} | {pct(e['no_answer']['base'])} → "
            f"{pct(e['no_answer']['adapter'])} | {pct(e['spelled_out']['base'])} → "
            f"{pct(e['spelled_out']['adapter'])} |")
    s = c["overall"]["strict"]
    lines.append(f"| **all** | {s['n']} | {pct(s['base'])} | {pct(s['adapter'])} | {100 * s['diff']:+.1f} "
                 f"[{100 * s['ci95'][0]:+.1f}, {100 * s['ci95'][1]:+.1f}] | {s['p_mcnemar']:.3g} | | | |")
    lines.append("")
    lines.extend(f"- {e['verdict']}" for _, e in ordered_tasks(c))
    return "\n".join(lines) + "\n"
