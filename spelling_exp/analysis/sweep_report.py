"""Cross-run comparison of a sweep: comparison.md / .html / .csv in the sweep dir.

One row per job: the swept parameters (from each job's Hydra overrides), base and adapter
accuracy per task, the paired difference with its 95% CI and McNemar p. Plots of accuracy
against each swept parameter with CI bars. When the sweep varies a seed (any swept key ending
in "seed"), jobs that differ only in the seed are aggregated: mean +- t-based 95% CI over seeds.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from spelling_exp import tasks as task_registry
from spelling_exp.analysis.compare import COMPARISON_FILE, read_comparison
from spelling_exp.analysis.report import percent_axis, pyplot, render_markdown_page, y_top
from spelling_exp.analysis.study import is_study, write_study
from spelling_exp.analysis.tables import fig_png, md_table
from spelling_exp.jobs import RESULT, job_dirs
from spelling_exp.storage.io import atomic_open, atomic_write_json, atomic_write_text, read_json
from spelling_exp.tasks import PRIMARY_TASKS

log = logging.getLogger(__name__)

# two-sided 95% t quantiles for df = 1..30; beyond that the normal value is close enough
IGNORED_OVERRIDE_PREFIXES = ("hydra.", "+experiment", "experiment", "+sweep", "sweep", "sweep_id", "output_dir",
                             "logger")


def t95(df: int) -> float:
    """The two-sided 95% critical value of t with ``df`` degrees of freedom (one source: pooled.py)."""
    from spelling_exp.analysis.pooled import t_quantile

    return t_quantile(0.975, df)


def seed_mean_ci(values: list[float]) -> tuple[float, float, float]:
    """(mean, lower, upper): t-based 95% CI over independent runs (seeds)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, m, m
    half = t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def _value(v: str) -> Any:
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def _metrics(eval_dir: str | None) -> dict[str, Any] | None:
    path = Path(eval_dir) / "metrics.json" if eval_dir else None
    return read_json(path) if path is not None and path.is_file() else None


def _accuracy_ci(metrics: dict[str, Any] | None, task: str) -> list[float] | None:
    """The Wilson 95% interval of a task's strict accuracy from an eval's metrics.json, if there."""
    ci = ((metrics or {}).get("tasks", {}).get(task) or {}).get("accuracy", {}).get("ci95")
    return list(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None


def collect_rows(sweep_dir: Path) -> tuple[list[dict[str, Any]], list[str], list[dict[str, Any]]]:
    """(rows of complete jobs, swept parameter names, failed jobs)."""
    from omegaconf import OmegaConf

    rows, failed = [], []
    for d in job_dirs(sweep_dir):
        status = read_json(d / RESULT) if (d / RESULT).is_file() else {"status": "missing"}
        overrides = [str(o) for o in OmegaConf.load(d / ".hydra" / "overrides.yaml")]
        params = {}
        for o in overrides:
            key, _, val = o.partition("=")
            key = key.lstrip("+~")
            if not o.startswith(IGNORED_OVERRIDE_PREFIXES) and not key.startswith(IGNORED_OVERRIDE_PREFIXES):
                params[key] = _value(val)
        cmp_file = d / "compare" / COMPARISON_FILE
        if status.get("status") != "complete" or not cmp_file.is_file():
            failed.append({"job": d.name, "params": params, "error": status.get("error") or status.get("status"),
                           "log": status.get("log")})
            continue
        c = read_comparison(cmp_file)  # eval dirs resolved where the sweep is now, even if it moved
        metrics = {side: _metrics(c.get(f"{side}_dir")) for side in ("base", "adapter")}
        split = ((metrics["adapter"] or {}).get("meta") or {}).get("split")
        row: dict[str, Any] = {"job": d.name, "params": params, "tasks": {}, "split": split, "overrides": overrides}
        for task, e in c["tasks"].items():
            s = e["strict"]
            row["tasks"][task] = {"base": s["base"], "adapter": s["adapter"], "diff": s["diff"], "ci95": s["ci95"],
                                  "p": s.get("p", s.get("p_mcnemar")),
                                  "test": s.get("test", "mcnemar_exact" if "p_mcnemar" in s else None),
                                  "no_answer_diff": (e.get("format") or {}).get("no_answer", {}).get("diff"),
                                  "forced_choice_diff": (e.get("forced_choice") or {}).get("diff"),
                                  "adapter_no_answer": e["no_answer"]["adapter"],
                                  "adapter_ci95": _accuracy_ci(metrics["adapter"], task)
                                  or [s["adapter"], s["adapter"]]}
            base_ci = _accuracy_ci(metrics["base"], task)
            if base_ci:
                row["tasks"][task]["base_ci95"] = base_ci
        rows.append(row)
    keys = sorted({k for r in rows for k in r["params"]} | {k for f in failed for k in f["params"]})
    swept = [k for k in keys if len({str(r["params"].get(k)) for r in rows + failed}) > 1]
    return rows, swept, failed


def aggregate_seeds(rows: list[dict[str, Any]], swept: list[str]) -> list[dict[str, Any]]:
    """Group jobs that differ only in seed keys; mean and 95% CI over seeds per task."""
    seed_keys = [k for k in swept if k.endswith("seed")]
    if not seed_keys:
        return []
    others = [k for k in swept if k not in seed_keys]
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[tuple(str(r["params"].get(k)) for k in others)].append(r)
    out = []
    for key, members in sorted(groups.items(), key=lambda kv: tuple(param_sort_key(v) for v in kv[0])):
        agg: dict[str, Any] = {"params": dict(zip(others, key)), "n_seeds": len(members), "tasks": {}}
        for task in members[0]["tasks"]:
            vals = {m: [r["tasks"][task][m] for r in members if task in r["tasks"]]
                    for m in ("base", "adapter", "diff")}
            agg["tasks"][task] = {m: dict(zip(("mean", "lo", "hi"), seed_mean_ci(v))) for m, v in vals.items()}
        out.append(agg)
    return out


def _num(v: Any) -> float | None:
    """The numeric value of a swept parameter value ("8", 8, "1e-4"), or None for a word."""
    v = _value(v) if isinstance(v, str) else v
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def param_sort_key(v: Any) -> tuple[int, float, str]:
    """Swept values in natural order: numbers numerically (4 < 8 < 16), then words, unset last."""
    if v is None or v == "":
        return 2, 0.0, ""
    n = _num(v)
    return (0, n, str(v)) if n is not None else (1, 0.0, str(v))


def _points(rows, aggregated, swept, param, task) -> list[tuple[str, tuple, int | None, dict[str, tuple]]]:
    """[(x, series, n_seeds, {"base"|"adapter"|"diff": (value, lo, hi)})] for one task: the
    seed-aggregated groups when the sweep has seeds, else one point per job; ``series`` holds the
    values of the other swept parameters."""
    seed_keys = [k for k in swept if k.endswith("seed")]
    out = []
    if aggregated and param not in seed_keys:
        others = [k for k in swept if k != param and k not in seed_keys]
        for a in aggregated:
            e = a.get("tasks", {}).get(task)
            if not e:
                continue
            vals = {m: (e[m]["mean"], e[m]["lo"], e[m]["hi"]) for m in ("base", "adapter", "diff") if m in e}
            out.append((str(a["params"].get(param, "")), tuple((k, a["params"].get(k)) for k in others),
                        a.get("n_seeds"), vals))
        return out
    others = [k for k in swept if k != param]
    for r in rows:
        e = r.get("tasks", {}).get(task)
        if not e:
            continue
        ad, ba = e["adapter"], e["base"]
        vals = {"adapter": (ad, *(e.get("adapter_ci95") or (ad, ad))),
                "base": (ba, *(e.get("base_ci95") or (ba, ba))),
                "diff": (e["diff"], *(e.get("ci95") or (e["diff"], e["diff"])))}
        out.append((str(r["params"].get(param, "")), tuple((k, r["params"].get(k)) for k in others), None, vals))
    return out


def plots(rows, swept, aggregated, dpi: int = 110) -> list[tuple[str, bytes]]:
    """One figure per swept (non-seed) parameter: per task, strict accuracy of base and adapter
    (top) and the paired difference adapter - base (bottom) against the parameter's values, with
    95% intervals. Values sorted numerically; numeric values joined by a faint line, categorical
    (word) values never; other swept parameters become separate, offset series."""
    plt = pyplot()
    tasks = task_registry.ordered(t for r in rows for t in r["tasks"])
    seed_keys = [k for k in swept if k.endswith("seed")]
    out = []
    for param in [k for k in swept if k not in seed_keys] or swept[:1]:
        agg = bool(aggregated) and param not in seed_keys
        pts = {t: _points(rows, aggregated, swept, param, t) for t in tasks}
        xs = sorted({p[0] for ps in pts.values() for p in ps}, key=param_sort_key)
        if not xs:
            continue
        numeric = all(_num(x) is not None for x in xs)
        series = sorted({p[1] for ps in pts.values() for p in ps},
                        key=lambda s: tuple(param_sort_key(v) for _, v in s))
        n_s = len(series)
        width = min(7.5, max(4.6, 0.45 * len(xs) * (1 + 0.6 * (n_s - 1)) + 2.2))
        fig, axes = plt.subplots(2, len(tasks), figsize=(min(15.0, width * len(tasks) + 1.5), 6.6), squeeze=False,
                                 layout="constrained")
        cmap = plt.get_cmap("tab10")
        highs: list[float] = []
        spans = [5.0] * len(tasks)  # the diff panels: symmetric about 0, at least +-5 points
        for col, task in enumerate(tasks):
            ax_acc, ax_diff = axes[0][col], axes[1][col]
            for si, s in enumerate(series):
                name = ", ".join(f"{k}={v}" for k, v in s)
                mine = {p[0]: p for p in pts[task] if p[1] == s}
                xi = [i for i, x in enumerate(xs) if x in mine]
                if not xi:
                    continue
                colors = (("#7f7f7f", "#1f77b4") if n_s == 1 else (cmap(si % 10), cmap(si % 10)))
                for j, (m, color, marker) in enumerate((("base", colors[0], "s"), ("adapter", colors[1], "o"))):
                    k = 2 * n_s
                    off = (2 * si + j - (k - 1) / 2) * min(0.7, 0.2 * k) / k
                    vals = [mine[xs[i]][3].get(m) for i in xi]
                    keep = [(i, v) for i, v in zip(xi, vals) if v]
                    if not keep:
                        continue
                    ys = [v[0] for _, v in keep]
                    err = [[max(0.0, v[0] - v[1]) for _, v in keep], [max(0.0, v[2] - v[0]) for _, v in keep]]
                    who = "base model" if m == "base" else "LoRA adapter" + (" (mean over seeds)" if agg else "")
                    label = who if n_s == 1 else f"{m}, {name}"
                    ax_acc.errorbar([i + off for i, _ in keep], ys, yerr=err, fmt=marker, capsize=3, color=color,
                                    markerfacecolor="white" if (m == "base" and n_s > 1) else color,
                                    linestyle=(":" if m == "base" else "-") if numeric and len(keep) > 1 else "none",
                                    linewidth=0.9, alpha=0.95, label=label if col == 0 else None)
                    highs += [v[2] for _, v in keep]
                dk = n_s
                off = (si - (dk - 1) / 2) * min(0.5, 0.12 * dk) / dk
                keep = [(i, mine[xs[i]][3].get("diff")) for i in xi if mine[xs[i]][3].get("diff")]
                if keep:
                    ys = [100 * v[0] for _, v in keep]
                    err = [[max(0.0, 100 * (v[0] - v[1])) for _, v in keep],
                           [max(0.0, 100 * (v[2] - v[0])) for _, v in keep]]
                    spans[col] = max([spans[col]] + [abs(100 * x) for _, v in keep for x in v[1:] if x == x])
                    ax_diff.errorbar([i + off for i, _ in keep], ys, yerr=err, fmt="D", capsize=3, markersize=5,
                                     color=colors[1], linestyle="-" if numeric and len(keep) > 1 else "none",
                                     linewidth=0.9)
            ticks = list(xs)
            if agg and n_s == 1:
                seeds = {p[0]: p[2] for p in pts[task]}
                ticks = [f"{x}\n{seeds[x]} seeds" if seeds.get(x) else x for x in xs]
            for ax in (ax_acc, ax_diff):
                ax.set_xticks(range(len(xs)), ticks)
                ax.set_xlim(-0.6, len(xs) - 0.4)
                ax.grid(axis="x", visible=False)
            interval = "t-interval over seeds" if agg else "interval"
            percent_axis(ax_acc, 1.0, f"strict accuracy\n(95% {interval})")
            ax_acc.set_title(f"{task}: strict accuracy")
            ax_diff.axhline(0, color="#555555", linewidth=0.8)
            diff_interval = "t-interval over seeds" if agg else "paired bootstrap CI"
            ax_diff.set_ylabel(f"adapter − base, points\n(95% {diff_interval})")
            ax_diff.set_title(f"{task}: adapter − base")
            ax_diff.set_xlabel(param + ("" if numeric else " (categories)"))
        for ax in axes[0]:
            ax.set_ylim(-0.025 * y_top(highs), y_top(highs))  # a marker at 0% stays whole above the axis
        for ax, span in zip(axes[1], spans):
            ax.set_ylim(-1.15 * span, 1.15 * span)
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, labels, loc="outside right upper", frameon=False)
        title = f"Accuracy vs {param}"
        fig.suptitle(f"Hold-out accuracy vs {param}" + (" (mean over seeds)" if agg else ""))
        out.append((title, fig_png(fig, dpi)))
    return out


def _p(p: Any) -> str:
    return f"{p:.3g}" if isinstance(p, (int, float)) else ""


def _code(s: Any) -> str:
    s = str(s).replace("\n", " ")
    fence = "``" if "`" in s else "`"
    return f"{fence} {s} {fence}" if fence == "``" else f"`{s}`"


def selection_score(row: dict[str, Any]) -> float:
    """What a sweep selects on: the adapter's strict accuracy averaged over the primary tasks."""
    vals = [row["tasks"][t]["adapter"] for t in PRIMARY_TASKS if t in row["tasks"]]
    return sum(vals) / len(vals) if vals else float("nan")


def _sweep_overrides(sweep_dir: Path) -> list[str]:
    """The sweep's own +sweep=... / experiment overrides from multirun.yaml (not in the jobs' overrides)."""
    from omegaconf import OmegaConf

    f = sweep_dir / "multirun.yaml"
    if not f.is_file():
        return []
    task = OmegaConf.select(OmegaConf.load(f), "hydra.overrides.task") or []
    return [str(o) for o in task if str(o).lstrip("+").startswith("sweep=")]


def select_for_test(rows: list[dict[str, Any]], sweep_dir: Path) -> dict[str, Any] | None:
    """The job with the best validation score and the one command that evaluates it on the test split.

    Choosing on the split you report would make the winner's number optimistic (the maximum of
    several noisy estimates), so the choice is made on validation and the test split is used once.
    """
    if not rows:
        return None
    best = max(rows, key=lambda r: (selection_score(r), -int(r["job"]) if str(r["job"]).isdigit() else 0))
    keep = [o for o in _sweep_overrides(sweep_dir) if o not in best["overrides"]] + [
        o for o in best["overrides"] if not o.lstrip("+~").startswith(("eval.split=", "output_dir=", "hydra."))]
    out_dir = sweep_dir / f"test_{best['job']}"
    command = " ".join(["python -m spelling_exp", *keep, "eval.split=test", f"output_dir={out_dir}"])
    splits = sorted({str(r.get("split")) for r in rows})
    return {"job": best["job"], "params": best["params"], "score": selection_score(best), "splits": splits,
            "on_validation": splits == ["validation"], "command": command}


# ------------------------------------------------------------------------------ accuracy by template
def _nonzero(weights: Any) -> str:
    """Names with a non-zero weight: "space, comma" when their weights are equal, else with weights."""
    if not isinstance(weights, dict):
        return ""
    kept = [(str(k), float(v)) for k, v in weights.items() if isinstance(v, (int, float)) and v > 0]
    if len({w for _, w in kept}) <= 1:
        return ", ".join(k for k, _ in kept)
    return ", ".join(f"{k} ({w:g})" for k, w in kept)


def job_template(job_dir: Path) -> dict[str, Any] | None:
    """A job's template preset and the categories / styles / separators its mix weights above zero,
    from the job's own record of its config (.hydra/config.yaml, key ``template``)."""
    from omegaconf import OmegaConf

    f = Path(job_dir) / ".hydra" / "config.yaml"
    if not f.is_file():
        return None
    try:
        t = OmegaConf.select(OmegaConf.load(f), "template")
        t = OmegaConf.to_container(t, resolve=False) if t is not None else None
    except Exception:  # a damaged record leaves the job out of this section, never the report
        return None
    if not isinstance(t, dict):
        return None
    mix = t.get("mix") if isinstance(t.get("mix"), dict) else {}
    return {"preset": str(t.get("name", "?")), "categories": _nonzero(mix.get("categories")),
            "styles": _nonzero(mix.get("styles")), "separators": _nonzero(mix.get("separators"))}


def template_rows(sweep_dir: Path, rows: list[dict[str, Any]], swept: list[str]) -> list[dict[str, Any]]:
    """One entry per complete job with its template (see :func:`job_template`) and a plot label,
    when the sweep varies the template (a swept ``template`` key, or jobs whose templates differ);
    else []."""
    found = []
    for r in rows:
        t = job_template(Path(sweep_dir) / str(r["job"]))
        if t is not None:
            found.append((r, t))
    dims = ("preset", "categories", "styles", "separators")
    varies = [d for d in dims if len({t[d] for _, t in found}) > 1]
    if not found or not (varies or any(k == "template" or k.startswith("template.") for k in swept)):
        return []
    others = [k for k in swept if k != "template" and not k.startswith("template.")]
    # a plot label names what the preset name alone does not tell apart (e.g. mixed with one separator)
    names = len({t["preset"] for _, t in found})
    ambiguous = [d for d in ("categories", "separators", "styles")
                 if len({(t["preset"], t[d]) for _, t in found}) > names]
    out = []
    for r, t in found:
        label = [t["preset"], *[f"{d}: {t[d]}" for d in ambiguous], *[f"{k}={r['params'].get(k)}" for k in others]]
        out.append({"job": r["job"], **t, "label": "\n".join(label), "tasks": {
            task: {"adapter": e["adapter"], "adapter_ci95": e.get("adapter_ci95"), "base": e["base"],
                   "base_ci95": e.get("base_ci95")} for task, e in r["tasks"].items()}})
    return out


def plot_by_template(entries: list[dict[str, Any]], dpi: int = 110) -> bytes | None:
    """Adapter strict accuracy per job (labelled by its template), one marker per task with its 95%
    interval; the base model's accuracy per task as a dashed line (the same questions for every job)."""
    tasks = task_registry.ordered(t for e in entries for t in e["tasks"])
    if not entries or not tasks:
        return None
    plt = pyplot()
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.0, 1.25 * len(entries) + 3.5)), 4.2))
    highs: list[float] = []
    k = len(tasks)
    for j, task in enumerate(tasks):
        color = colors(j % 10)
        pts = [(i, e["tasks"][task]) for i, e in enumerate(entries) if task in e["tasks"]]
        ys = [p["adapter"] for _, p in pts]
        cis = [p.get("adapter_ci95") or [p["adapter"], p["adapter"]] for _, p in pts]
        off = (j - (k - 1) / 2) * 0.16
        ax.errorbar([i + off for i, _ in pts], ys, yerr=[[max(0.0, y - c[0]) for y, c in zip(ys, cis)],
                                                         [max(0.0, c[1] - y) for y, c in zip(ys, cis)]],
                    fmt="o", linestyle="none", capsize=3, markersize=6, color=color, elinewidth=1.2,
                    label=f"{task}: LoRA adapter")
        highs += [c[1] for c in cis]
        bases = {round(p["base"], 6) for _, p in pts}
        if len(bases) == 1:
            base = bases.pop()
            ax.axhline(base, color=color, linestyle="--", linewidth=1, alpha=0.8, label=f"{task}: base model")
            highs.append(base)
    ax.set_xticks(range(len(entries)), [e["label"] for e in entries])
    ax.set_xlim(-0.6, len(entries) - 0.4)
    ax.grid(axis="x", visible=False)
    top = y_top(highs)
    percent_axis(ax, top, "strict accuracy\n(95% interval)")
    ax.set_ylim(-0.025 * top, top)
    ax.set_xlabel("template preset of the job's training data")
    ax.set_title("Adapter strict accuracy by template")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig_png(fig, dpi)


def template_section(entries: list[dict[str, Any]], tasks: list[str], image: str | None) -> list[str]:
    """The "Accuracy by template" Markdown section (empty without entries)."""
    if not entries:
        return []

    def acc(p: dict[str, Any] | None) -> str:
        if not p:
            return ""
        ci = p.get("adapter_ci95")
        return f"{100 * p['adapter']:.1f}%" + (f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else "")

    md = ["", "## Accuracy by template", "",
          "Per job: the template preset its adapter was trained on, with the categories, styles and separators "
          "its mix weights above zero (from the job's .hydra/config.yaml, template.mix; a weight is shown when "
          "they differ), and the adapter's strict accuracy per task with its 95% interval "
          "(eval_adapter/metrics.json). Each job's data report (data/report/data_report.html) shows its examples. "
          "Exploratory: no multiplicity correction across jobs.", ""]
    head = ["job", "template", "categories", "styles", "separators", *[f"{t}: adapter [95% CI]" for t in tasks]]
    body = [[str(e["job"]), e["preset"], e["categories"], e["styles"], e["separators"],
             *[acc(e["tasks"].get(t)) for t in tasks]] for e in entries]
    md += md_table(head, body)
    if image:
        md += ["", f"![Accuracy by template]({image})"]
    return md


def write_sweep_report(sweep_dir: Path, dpi: int = 110) -> Path:
    sweep_dir = Path(sweep_dir)
    rows, swept, failed = collect_rows(sweep_dir)
    aggregated = aggregate_seeds(rows, swept)
    tasks = task_registry.ordered(t for r in rows for t in r["tasks"])

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [f"{t}_{m}" for t in tasks for m in ("base", "adapter", "diff", "ci_lo", "ci_hi", "p", "no_answer_diff",
                                               "adapter_no_answer", "forced_choice_diff")]
    w.writerow(["job", *swept, *cols])
    for r in rows:
        vals = []
        for t in tasks:
            e = r["tasks"].get(t)
            vals += ([e["base"], e["adapter"], e["diff"], e["ci95"][0], e["ci95"][1], e["p"], e["no_answer_diff"],
                      e["adapter_no_answer"], e.get("forced_choice_diff")] if e else [""] * 9)
        w.writerow([r["job"], *[r["params"].get(k, "") for k in swept], *vals])
    atomic_write_text(sweep_dir / "comparison.csv", buf.getvalue())

    def pct(x):
        return f"{100 * x:.1f}%"

    def pts(x, lo, hi):
        return f"{100 * x:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"

    tests = ", ".join(sorted({str(e.get("test")).replace("_", " ") for r in rows for e in r["tasks"].values()
                              if e.get("test")})) or "McNemar exact"
    md = [f"# Sweep comparison: {sweep_dir}", "", f"Swept: {', '.join(swept) or '(nothing)'}; "
          f"{len(rows)} complete job(s), {len(failed)} failed.", "",
          "Per task: strict accuracy of the base model and of the LoRA adapter on the same hold-out questions; "
          "diff = adapter − base in percentage points with its paired bootstrap 95% CI; p = the paired test named "
          f"in comparison.json ({tests}); forced-choice diff: the same difference scored without a parser "
          "(the most probable candidate answer). One row per job; a sweep's rows are exploratory (no multiplicity "
          "correction across jobs).",
          ""]
    head = ["job", *swept] + [f"{t}: {c}" for t in tasks
                              for c in ("base", "adapter", "diff [95% CI]", "p", "forced-choice diff")]
    body = []
    for r in rows:
        cells = [r["job"], *[str(r["params"].get(k, "")) for k in swept]]
        for t in tasks:
            e = r["tasks"].get(t)
            fc = e.get("forced_choice_diff") if e else None
            cells += ([pct(e["base"]), pct(e["adapter"]), pts(e["diff"], *e["ci95"]), _p(e.get("p")),
                       f"{100 * fc:+.1f}" if fc is not None else "n/a"] if e else [""] * 5)
        body.append(cells)
    md += md_table(head, body)
    study = None
    if is_study(rows, swept):
        # a design over training seeds: one answer over every seed, never a selected seed
        study, section = write_study(sweep_dir, [r["job"] for r in rows], dpi)
        md[5:5] = section[1:] + [""]
    chosen = None if study else select_for_test(rows, sweep_dir)
    if chosen:
        params = ", ".join(f"{k}={v}" for k, v in chosen["params"].items() if k in swept) or "the only job"
        md += ["", "## Selected configuration", "",
               f"Job {chosen['job']} ({params}): the best adapter strict accuracy averaged over "
               f"{' and '.join(PRIMARY_TASKS)}, {100 * chosen['score']:.1f}%, on the "
               f"**{', '.join(chosen['splits'])}** split."]
        if chosen["on_validation"]:
            md += ["", "Its answer comes from the test split, evaluated once (the trained adapter is reused from the "
                   "cache):", "", "```bash", chosen["command"], "```"]
        else:
            md += ["", "**Warning:** these jobs were evaluated on the test split, so choosing among them makes the "
                   "winner's number optimistic. Sweep with eval.split=validation (the sweep presets do), then "
                   "evaluate the chosen configuration on test once:", "", "```bash", chosen["command"], "```"]
    if aggregated:
        md += ["", "## Aggregated over seeds (mean, 95% t-interval)", ""]
        others = [k for k in swept if not k.endswith("seed")]
        head = [*others, "seeds"] + [f"{t}: {c}" for t in tasks for c in ("base", "adapter [95% CI]",
                                                                           "diff [95% CI]")]
        body = []
        for a in aggregated:
            cells = [str(a["params"].get(k, "")) for k in others] + [str(a["n_seeds"])]
            for t in tasks:
                e = a["tasks"].get(t)
                cells += ([pct(e["base"]["mean"]),
                           f"{pct(e['adapter']['mean'])} [{pct(e['adapter']['lo'])}, {pct(e['adapter']['hi'])}]",
                           pts(e["diff"]["mean"], e["diff"]["lo"], e["diff"]["hi"])] if e else [""] * 3)
            body.append(cells)
        md += md_table(head, body)
    templates = template_rows(sweep_dir, rows, swept)
    if templates:
        png = None
        try:
            png = plot_by_template(templates, dpi)
        except Exception as e:  # the section's table stands without its plot
            log.warning("sweep report: accuracy-by-template plot left out (%s: %s)", type(e).__name__, e)
        if png:
            with atomic_open(sweep_dir / "comparison_template.png", "wb") as f:
                f.write(png)
        md += template_section(templates, tasks, "comparison_template.png" if png else None)
    if failed:
        md += ["", "## Failed jobs", ""] + [
            f"- job {f['job']} ({', '.join(f'{k}={v}' for k, v in f['params'].items()) or 'no overrides'}): "
            f"{_code(f['error'])} (log: {_code(f['log'])})" for f in failed]
    images = plots(rows, swept, aggregated, dpi) if rows else []
    for i, (title, png) in enumerate(images):
        name = f"comparison_{i}.png"
        with atomic_open(sweep_dir / name, "wb") as f:
            f.write(png)
        md += ["", f"## {title}", "", f"![{title}]({name})"]
    md_text = "\n".join(md) + "\n"
    atomic_write_text(sweep_dir / "comparison.md", md_text)
    atomic_write_text(sweep_dir / "comparison.html",
                      render_markdown_page(md_text, f"Sweep comparison: {sweep_dir.name}", sweep_dir, width="1250px"))
    atomic_write_json(sweep_dir / "comparison.json",
                      {"swept": swept, "rows": rows, "aggregated": aggregated, "failed": failed,
                       "selected": chosen, "templates": templates,
                       "study": "study/study.json" if study else None})
    return sweep_dir
