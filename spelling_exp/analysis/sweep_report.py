"""Cross-run comparison of a sweep: comparison.md / .html / .csv in the sweep dir.

One row per job: the swept parameters (from each job's Hydra overrides), base and adapter
accuracy per task, the paired difference with its 95% CI and McNemar p. Plots of accuracy
against each swept parameter with CI bars. When the sweep varies a seed (any swept key ending
in "seed"), jobs that differ only in the seed are aggregated: mean +- t-based 95% CI over seeds.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from spelling_exp.analysis.compare import COMPARISON_FILE, TASK_ORDER, read_comparison
from spelling_exp.jobs import RESULT, job_dirs
from spelling_exp.storage.io import atomic_open, atomic_write_json, atomic_write_text, read_json

# two-sided 95% t quantiles for df = 1..30; beyond that the normal value is close enough
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]
IGNORED_OVERRIDE_PREFIXES = ("hydra.", "+experiment", "experiment", "+sweep", "sweep", "sweep_id", "output_dir",
                             "logger")


def t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.96


def mean_ci(values: list[float]) -> tuple[float, float, float]:
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
        row: dict[str, Any] = {"job": d.name, "params": params, "tasks": {}}
        adapter_metrics = read_json(Path(c["adapter_dir"]) / "metrics.json") if (
            Path(c["adapter_dir"]) / "metrics.json").is_file() else None
        for task, e in c["tasks"].items():
            s = e["strict"]
            row["tasks"][task] = {"base": s["base"], "adapter": s["adapter"], "diff": s["diff"], "ci95": s["ci95"],
                                  "p": s["p_mcnemar"], "lenient_diff": e["lenient"]["diff"],
                                  "adapter_no_answer": e["no_answer"]["adapter"],
                                  "adapter_ci95": adapter_metrics["tasks"][task]["accuracy"]["ci95"]
                                  if adapter_metrics else [s["adapter"], s["adapter"]]}
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
    for key, members in sorted(groups.items()):
        agg: dict[str, Any] = {"params": dict(zip(others, key)), "n_seeds": len(members), "tasks": {}}
        for task in members[0]["tasks"]:
            vals = {m: [r["tasks"][task][m] for r in members if task in r["tasks"]]
                    for m in ("base", "adapter", "diff")}
            agg["tasks"][task] = {m: dict(zip(("mean", "lo", "hi"), mean_ci(v))) for m, v in vals.items()}
        out.append(agg)
    return out


def _fig_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plots(rows, swept, aggregated) -> list[tuple[str, bytes]]:
    import matplotlib

    matplotlib.use("Agg")
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    import matplotlib.pyplot as plt

    tasks = [t for t in TASK_ORDER if any(t in r["tasks"] for r in rows)]
    out = []
    for param in [k for k in swept if not k.endswith("seed")] or swept[:1]:
        fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 3.4), squeeze=False)
        for ax, task in zip(axes[0], tasks):
            if aggregated and not param.endswith("seed"):
                pts = sorted(((_value(a["params"][param]), a["tasks"][task]) for a in aggregated if task in a["tasks"]),
                             key=lambda p: (isinstance(p[0], str), p[0]))
                xs = [str(p[0]) for p in pts]
                for m, color, label in (("adapter", "#1f77b4", "adapter (mean over seeds)"),
                                        ("base", "#8c8c8c", "base")):
                    ys = [p[1][m]["mean"] for p in pts]
                    err = [[max(0.0, y - p[1][m]["lo"]) for y, p in zip(ys, pts)],
                           [max(0.0, p[1][m]["hi"] - y) for y, p in zip(ys, pts)]]
                    ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=color, label=label)
            else:
                pts = sorted(((r["params"].get(param), r["tasks"][task]) for r in rows if task in r["tasks"]),
                             key=lambda p: (isinstance(p[0], str), p[0]))
                xs = [str(p[0]) for p in pts]
                ys = [p[1]["adapter"] for p in pts]
                err = [[max(0.0, y - p[1]["adapter_ci95"][0]) for y, p in zip(ys, pts)],
                       [max(0.0, p[1]["adapter_ci95"][1] - y) for y, p in zip(ys, pts)]]
                ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color="#1f77b4", label="adapter (95% CI)")
                ax.plot(xs, [p[1]["base"] for p in pts], "--", color="#8c8c8c", label="base")
            ax.set_ylim(0, 1)
            ax.set_xlabel(param)
            ax.set_ylabel(f"{task} accuracy")
            ax.legend(fontsize=7)
        fig.suptitle(f"Accuracy vs {param}")
        out.append((f"Accuracy vs {param}", _fig_png(fig)))
    return out


def write_sweep_report(sweep_dir: Path) -> Path:
    sweep_dir = Path(sweep_dir)
    rows, swept, failed = collect_rows(sweep_dir)
    aggregated = aggregate_seeds(rows, swept)
    tasks = [t for t in TASK_ORDER if any(t in r["tasks"] for r in rows)]

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    cols = [f"{t}_{m}" for t in tasks for m in ("base", "adapter", "diff", "ci_lo", "ci_hi", "p", "lenient_diff",
                                               "adapter_no_answer")]
    w.writerow(["job", *swept, *cols])
    for r in rows:
        vals = []
        for t in tasks:
            e = r["tasks"].get(t)
            vals += ([e["base"], e["adapter"], e["diff"], e["ci95"][0], e["ci95"][1], e["p"], e["lenient_diff"],
                      e["adapter_no_answer"]] if e else [""] * 8)
        w.writerow([r["job"], *[r["params"].get(k, "") for k in swept], *vals])
    atomic_write_text(sweep_dir / "comparison.csv", buf.getvalue())

    def pct(x):
        return f"{100 * x:.1f}%"

    md = [f"# Sweep comparison: {sweep_dir}", "", f"Swept: {', '.join(swept) or '(nothing)'}; "
          f"{len(rows)} complete job(s), {len(failed)} failed.", ""]
    head = ["job", *swept] + [f"{t}: base → adapter, diff [95% CI], p" for t in tasks]
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["job"], *[str(r["params"].get(k, "")) for k in swept]]
        for t in tasks:
            e = r["tasks"].get(t)
            cells.append(f"{pct(e['base'])} → {pct(e['adapter'])}, {100 * e['diff']:+.1f} "
                         f"[{100 * e['ci95'][0]:+.1f}, {100 * e['ci95'][1]:+.1f}], p={e['p']:.3g}" if e else "")
        md.append("| " + " | ".join(cells) + " |")
    if aggregated:
        md += ["", "## Aggregated over seeds (mean, 95% t-interval)", ""]
        others = [k for k in swept if not k.endswith("seed")]
        head = [*others, "seeds"] + [f"{t}: adapter, diff" for t in tasks]
        md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for a in aggregated:
            cells = [str(a["params"].get(k, "")) for k in others] + [str(a["n_seeds"])]
            for t in tasks:
                e = a["tasks"][t]
                cells.append(f"{pct(e['adapter']['mean'])} [{pct(e['adapter']['lo'])}, {pct(e['adapter']['hi'])}], "
                             f"{100 * e['diff']['mean']:+.1f} [{100 * e['diff']['lo']:+.1f}, "
                             f"{100 * e['diff']['hi']:+.1f}]")
            md.append("| " + " | ".join(cells) + " |")
    if failed:
        md += ["", "## Failed jobs", ""] + [f"- job {f['job']} ({f['params']}): {f['error']} (log: {f['log']})"
                                              for f in failed]
    images = plots(rows, swept, aggregated) if rows else []
    for i, (title, png) in enumerate(images):
        name = f"comparison_{i}.png"
        with atomic_open(sweep_dir / name, "wb") as f:
            f.write(png)
        md += ["", f"## {title}", "", f"![{title}]({name})"]
    atomic_write_text(sweep_dir / "comparison.md", "\n".join(md) + "\n")

    tables = "<pre>" + html.escape("\n".join(line for line in md if not line.startswith("!["))) + "</pre>"
    plots_html = "".join(f"<h2>{html.escape(t)}</h2><img src='data:image/png;base64,{base64.b64encode(p).decode()}'>"
                         for t, p in images)
    atomic_write_text(sweep_dir / "comparison.html",
                      "<!doctype html><html><head><meta charset='utf-8'><title>sweep comparison</title><style>"
                      "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}"
                      "</style></head><body>" + tables + plots_html + "</body></html>")
    atomic_write_json(sweep_dir / "comparison.json",
                      {"swept": swept, "rows": rows, "aggregated": aggregated, "failed": failed})
    return sweep_dir
