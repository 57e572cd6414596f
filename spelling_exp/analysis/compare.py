"""Paired comparison of two evaluations of the same questions (e.g. base vs adapter).

The question is the unit: each question's score is the share of its replies that are right,
and both evaluations answered the same questions, so everything is paired per question.

- Difference: mean over questions of (adapter - base), with a percentile bootstrap 95% CI
  over questions (over words for the `overall` scope: a word can be in both tasks).
- Test: McNemar's exact test when every question has one reply (scores are 0/1); a paired
  sign-flip permutation test over per-question differences when questions have several replies
  or are clustered (`overall`). The test used is recorded beside its p.
- Primary analysis, declared: strict accuracy on position and on count, co-primary, with a Holm
  correction over the two. Everything else (the lenient reading, the `overall` scope, strata
  and breakdowns, every row of a sweep) is exploratory and labelled so.
- Minimum detectable effect: the difference this n could detect with 80% power at Holm's
  strictest level (alpha / 2 for two co-primary tasks), from the observed discordance, so a
  "no significant difference" says how large a difference it could have seen.

Two evaluations are compared only when they share their identity (model, questions, split,
backend, sampling, max_new_tokens, n_samples, seed): anything but the adapter differing is
refused with the difference named.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spelling_exp.analysis.stats import holm, mde_paired, paired_diff_ci, paired_test
from spelling_exp.config import Task
from spelling_exp.errors import ConfigError
from spelling_exp.storage.io import atomic_write_json, iter_jsonl, read_json

ALPHA = 0.05
POWER = 0.8
TASK_ORDER = tuple(str(t) for t in Task)
PRIMARY_TASKS = ("position", "count")  # co-primary, Holm-corrected; everything else is exploratory
COMPARISON_FILE = "comparison.json"
# Identity fields that may differ between two compared evaluations: what differs by design (the
# adapter and whether it was merged), and the batch plan (same distribution of replies).
IDENTITY_FREE = ("adapter", "generation.merge_adapter", "generation.batch_size")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def identity_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """'key: a vs b' for each identity field in which two evaluations differ (adapter aside)."""
    fa, fb = _flatten(a), _flatten(b)
    return [f"{k}: {fa.get(k)!r} vs {fb.get(k)!r}" for k in sorted(set(fa) | set(fb))
            if fa.get(k) != fb.get(k) and not any(k == f or k.startswith(f + ".") for f in IDENTITY_FREE)]


def _check_comparable(base_dir: Path, adapter_dir: Path, mb: dict[str, Any], ma: dict[str, Any]) -> None:
    ia, ib = mb.get("meta", {}).get("identity"), ma.get("meta", {}).get("identity")
    for d, ident in ((base_dir, ia), (adapter_dir, ib)):
        if ident is None:
            raise ConfigError(f"{d}: metrics.json records no evaluation identity (an evaluation from an older "
                              "version); evaluate again before comparing")
    diffs = identity_differences(ia, ib)
    if diffs:
        raise ConfigError(f"{base_dir} and {adapter_dir} differ in more than the adapter ({'; '.join(diffs)}); "
                          "a paired comparison needs both evaluated the same way")


def _per_question(pred_path: Path, field: str) -> dict[str, float]:
    """Mean of ``field`` over each question's replies."""
    sums: dict[str, list[float]] = {}
    for r in iter_jsonl(pred_path):
        sums.setdefault(r["id"], []).append(float(r[field]))
    return {k: sum(v) / len(v) for k, v in sums.items()}


def _paired(ids: list[str], base: dict[str, float], adapter: dict[str, float], words: dict[str, str] | None,
            n_boot: int, seed: int, analysis: str) -> dict[str, Any]:
    a = [base[i] for i in ids]
    b = [adapter[i] for i in ids]
    clusters = [words[i] for i in ids] if words else None
    diff, lo, hi = paired_diff_ci(a, b, clusters=clusters, n_boot=n_boot, seed=seed)
    binary = all(x in (0.0, 1.0) for x in a + b)
    test = paired_test(a, b, binary=binary, clusters=clusters, seed=seed)
    discordance = sum(abs(y - x) for x, y in zip(a, b)) / len(ids)
    return {"n": len(ids), "base": sum(a) / len(a), "adapter": sum(b) / len(b), "diff": diff, "ci95": [lo, hi],
            "test": test["test"], "p": test["p"],
            "base_only_correct": sum(1 for x, y in zip(a, b) if x > y),
            "adapter_only_correct": sum(1 for x, y in zip(a, b) if y > x),
            "discordance": discordance, "analysis": analysis}


def ordered_tasks(c: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Tasks in canonical order (JSON round-trips sort keys alphabetically)."""
    return sorted(c["tasks"].items(), key=lambda kv: TASK_ORDER.index(kv[0]))


def verdict(task: str, s: dict[str, Any]) -> str:
    pts = 100 * s["diff"]
    ci = f"{100 * s['ci95'][0]:+.1f} to {100 * s['ci95'][1]:+.1f} points"
    p = s.get("p_holm", s["p"])
    stat = f"{'Holm-adjusted ' if 'p_holm' in s else ''}p={p:.3g}, {s['test'].replace('_', ' ')}"
    if p < ALPHA:
        better = "better" if s["diff"] > 0 else "worse"
        return f"{task}: the adapter is {better} by {pts:+.1f} points (95% CI {ci}, {stat})."
    mde = s.get("mde80")
    could = f"; this n could detect about {100 * mde:.0f} points with 80% power" if mde == mde and mde else ""
    return f"{task}: no significant difference ({pts:+.1f} points, 95% CI {ci}, {stat}{could})."


def compare_evals(base_dir: Path, adapter_dir: Path, n_boot: int = 10000, seed: int = 0) -> dict[str, Any]:
    for d in (base_dir, adapter_dir):
        if not (d / "metrics.json").is_file():
            raise ConfigError(f"no finished evaluation in {d} (metrics.json missing): set compare.base=<eval dir> "
                              "and compare.adapter=<eval dir>, or run eval_base and eval_adapter first")
    mb, ma = read_json(base_dir / "metrics.json"), read_json(adapter_dir / "metrics.json")
    _check_comparable(base_dir, adapter_dir, mb, ma)
    qa = {q["id"]: q for q in iter_jsonl(base_dir / "questions.jsonl")}
    qb = {q["id"]: q for q in iter_jsonl(adapter_dir / "questions.jsonl")}
    if qa != qb:
        raise ConfigError(f"{base_dir} and {adapter_dir} asked different questions; a paired comparison needs the same")
    tasks = sorted({q["task"] for q in qa.values()}, key=TASK_ORDER.index)
    words = {i: q["word"] for i, q in qa.items()}
    out: dict[str, Any] = {"base_dir": str(base_dir), "adapter_dir": str(adapter_dir), "tasks": {},
                           "primary": [t for t in PRIMARY_TASKS if t in tasks], "alpha": ALPHA, "power": POWER}
    readings = {field: (_per_question(base_dir / "predictions.jsonl", field),
                        _per_question(adapter_dir / "predictions.jsonl", field))
                for field in ("correct", "lenient_correct")}
    for scope in [*tasks, "overall"]:
        ids = sorted(i for i, q in qa.items() if scope == "overall" or q["task"] == scope)
        clusters = words if scope == "overall" else None
        strict = _paired(ids, *readings["correct"], clusters, n_boot, seed,
                         "primary" if scope in PRIMARY_TASKS else "exploratory")
        lenient = _paired(ids, *readings["lenient_correct"], clusters, n_boot, seed, "exploratory")
        entry: dict[str, Any] = {"strict": strict, "lenient": lenient}
        if scope == "overall":
            out["overall"] = entry
            continue
        for key in ("no_answer", "ambiguous", "spelled_out", "truncated"):
            entry[key] = {"base": mb["tasks"][scope][key]["rate"], "adapter": ma["tasks"][scope][key]["rate"]}
        b = mb["tasks"][scope]["baselines"]
        entry["best_baseline"] = {"name": b["best"], "rate": b["rules"][b["best"]]["rate"] if b["best"] else None}
        out["tasks"][scope] = entry
    primary = out["primary"]
    adjusted = holm([out["tasks"][t]["strict"]["p"] for t in primary])
    level = ALPHA / max(1, len(primary))  # Holm's strictest step: the level the MDE is stated at
    out["mde_alpha"] = level
    for t, p in zip(primary, adjusted):
        s = out["tasks"][t]["strict"]
        s["p_holm"] = p
    for t, e in out["tasks"].items():
        s = e["strict"]
        s["mde80"] = mde_paired(s["n"], s["discordance"], alpha=level if t in primary else ALPHA, power=POWER)
        e["verdict"] = verdict(t, s)
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


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _diff(s: dict[str, Any]) -> str:
    return f"{100 * s['diff']:+.1f} [{100 * s['ci95'][0]:+.1f}, {100 * s['ci95'][1]:+.1f}]"


def comparison_table(c: dict[str, Any]) -> str:
    """The answer (primary rows first), then the exploratory readings, as Markdown."""
    lines = ["| task | analysis | questions | base | adapter | diff, points [95% CI] | p (test) | Holm p | "
             "MDE at 80% power | best trivial baseline |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task, e in ordered_tasks(c):
        s = e["strict"]
        bb = e.get("best_baseline") or {}
        base_line = f"{_pct(bb['rate'])} ({bb['name']})" if bb.get("name") else ""
        holm_p = f"{s['p_holm']:.3g}" if "p_holm" in s else ""
        mde = f"{100 * s['mde80']:.1f} points" if s.get("mde80") == s.get("mde80") and s.get("mde80") else "n/a"
        lines.append(f"| {task} (strict) | {s['analysis']} | {s['n']} | {_pct(s['base'])} | {_pct(s['adapter'])} | "
                     f"{_diff(s)} | {s['p']:.3g} ({s['test'].replace('_', ' ')}) | {holm_p} | {mde} | {base_line} |")
    s = c["overall"]["strict"]
    lines.append(f"| all (strict) | exploratory | {s['n']} | {_pct(s['base'])} | {_pct(s['adapter'])} | {_diff(s)} | "
                 f"{s['p']:.3g} ({s['test'].replace('_', ' ')}) | | | |")
    lines.append("")
    lines.extend(f"- {e['verdict']}" for _, e in ordered_tasks(c))
    lines.append(f"- Primary analysis: strict accuracy on {' and '.join(c.get('primary', []))}, co-primary, "
                 f"Holm-corrected at alpha {c.get('alpha', ALPHA)}; MDE (minimum detectable effect) stated at alpha "
                 f"{c.get('mde_alpha', ALPHA):.3g}. Everything else is exploratory.")
    lines += ["", "Exploratory: format and the lenient reading (base → adapter)", "",
              "| task | lenient accuracy | lenient diff [95% CI] | no answer | ambiguous | spells word out | "
              "truncated |", "|---|---|---|---|---|---|---|"]
    for task, e in ordered_tasks(c):
        le = e["lenient"]
        cells = [f"{_pct(e[k]['base'])} → {_pct(e[k]['adapter'])}"
                 for k in ("no_answer", "ambiguous", "spelled_out", "truncated")]
        lenient = f"{_pct(le['base'])} → {_pct(le['adapter'])}"
        lines.append(f"| {task} | {lenient} | {_diff(le)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
