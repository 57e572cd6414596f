"""Run report: report.md and a self-contained report.html (plots embedded), answer first.

Order: the answer per task (base, adapter, difference with 95% CI, McNemar p, verdict), the
format-drift readings beside it, then plots (accuracy per task; by word length; by position;
by true count; count confusion heatmaps; no-answer / spelled-out rates; training loss), then
the resolved config.
"""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from spelling_exp.analysis.compare import TASK_ORDER as ORDER
from spelling_exp.analysis.compare import comparison_table, ordered_tasks
from spelling_exp.storage.io import atomic_write_text


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO lines about category axes are noise
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int) -> Path:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    os.replace(tmp, path)
    return path


def _finish(ax, ylabel: str, title: str, legend_size: int = 8, xticks: list[str] | None = None) -> None:
    """Shared styling of the rate plots: 0-1 y axis, labels, legend."""
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), xticks)
    ax.set_ylim(0, 1)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)


def _series(m: dict[str, Any], task: str, key: str) -> tuple[list[str], list[float], list[float], list[float]]:
    d = m["tasks"].get(task, {}).get(key, {})
    xs = list(d)
    return (xs, [d[x]["rate"] for x in xs], [max(0.0, d[x]["rate"] - d[x]["ci95"][0]) for x in xs],
            [max(0.0, d[x]["ci95"][1] - d[x]["rate"]) for x in xs])


def plot_accuracy_by_task(base, adapter) -> Any:
    plt = _plt()
    tasks = [t for t in ORDER if t in base["tasks"]]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    w = 0.38
    for j, (label, m, color) in enumerate((("base", base, "#8c8c8c"), ("adapter", adapter, "#1f77b4"))):
        rates = [m["tasks"][t]["accuracy"]["rate"] for t in tasks]
        err = [[max(0.0, r - m["tasks"][t]["accuracy"]["ci95"][0]) for r, t in zip(rates, tasks)],
               [max(0.0, m["tasks"][t]["accuracy"]["ci95"][1] - r) for r, t in zip(rates, tasks)]]
        xs = [i + (j - 0.5) * w for i in range(len(tasks))]
        ax.bar(xs, rates, w, yerr=err, capsize=4, label=f"{label} (strict)", color=color)
        ax.scatter(xs, [m["tasks"][t]["lenient_accuracy"]["rate"] for t in tasks], marker="_", s=400, color="k",
                   zorder=3, label="lenient reading" if j == 1 else None)
    _finish(ax, "accuracy", "Hold-out accuracy, base vs LoRA adapter (95% Wilson CI)", xticks=tasks)
    return fig


def plot_breakdown(base, adapter, task: str, key: str, xlabel: str, title: str) -> Any:
    if task not in base["tasks"] or key not in base["tasks"][task]:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, m, color in (("base", base, "#8c8c8c"), ("adapter", adapter, "#1f77b4")):
        xs, ys, lo, hi = _series(m, task, key)
        ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=label, color=color)
    ax.set_xlabel(xlabel)
    _finish(ax, "accuracy", title)
    return fig


def plot_confusion(base, adapter) -> Any:
    if "count" not in base["tasks"]:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, (label, m) in zip(axes, (("base", base), ("adapter", adapter))):
        conf = m["tasks"]["count"]["confusion"]
        truths = sorted(conf, key=int)
        preds = sorted({p for row in conf.values() for p in row}, key=lambda p: (p == "none", int(p) if
                                                                                  p.isdigit() else 0))
        grid = [[conf[t].get(p, 0) for p in preds] for t in truths]
        ax.imshow(grid, cmap="Blues")
        ax.set_xticks(range(len(preds)), preds)
        ax.set_yticks(range(len(truths)), truths)
        peak = max(max(row) for row in grid) or 1
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                            color="white" if v > peak / 2 else "black")
        ax.set_xlabel("predicted count")
        ax.set_ylabel("true count")
        ax.set_title(f"count confusion: {label}")
    return fig


def plot_format_drift(base, adapter) -> Any:
    plt = _plt()
    tasks = [t for t in ORDER if t in base["tasks"]]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    w = 0.2
    bars = (("base: no answer", base, "no_answer", "#bbbbbb"), ("adapter: no answer", adapter, "no_answer", "#ff7f0e"),
            ("base: spells word", base, "spelled_out", "#dddddd"), ("adapter: spells word", adapter, "spelled_out",
                                                                   "#2ca02c"))
    for j, (label, m, key, color) in enumerate(bars):
        ax.bar([i + (j - 1.5) * w for i in range(len(tasks))], [m["tasks"][t][key]["rate"] for t in tasks], w,
               label=label, color=color)
    _finish(ax, "share of replies", "Format drift: replies without a parseable answer / spelling the word", 7,
            xticks=tasks)
    return fig


def plot_training_loss(log_history: list[dict[str, Any]]) -> Any:
    points = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    if not points:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(*zip(*points), marker="." if len(points) < 50 else None, label="train")
    val = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h and "step" in h]
    if val:
        ax.plot(*zip(*val), marker="o", label="validation (unseen words)")
        ax.legend(fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (answer tokens)")
    ax.set_title("LoRA training loss")
    return fig


def make_plots(base, adapter, log_history, out: Path, dpi: int = 110) -> list[tuple[str, Path]]:
    """Every plot that has data, saved as PNG in ``out``: [(title, path)] in report order."""
    out.mkdir(parents=True, exist_ok=True)
    figures = [
        ("Accuracy per task", "accuracy_by_task", plot_accuracy_by_task(base, adapter)),
        ("Format drift", "format_drift", plot_format_drift(base, adapter)),
        ("Position accuracy by word length", "position_by_length",
         plot_breakdown(base, adapter, "position", "by_word_length", "word length", "position: by word length")),
        ("Count accuracy by word length", "count_by_length",
         plot_breakdown(base, adapter, "count", "by_word_length", "word length", "count: by word length")),
        ("Position accuracy by position k", "position_by_k",
         plot_breakdown(base, adapter, "position", "by_k", "k (1-based)", "position: by asked position")),
        ("Position accuracy by stratum", "position_by_stratum",
         plot_breakdown(base, adapter, "position", "by_stratum", "stratum", "position: first / middle / last")),
        ("Count accuracy by true count", "count_by_true_count",
         plot_breakdown(base, adapter, "count", "by_true_value", "true count", "count: by true count")),
        ("Accuracy by tokens per word", "position_by_tokens",
         plot_breakdown(base, adapter, "position", "by_word_tokens", "tokens per word",
                        "position: by tokens per word")),
        ("Count confusion", "count_confusion", plot_confusion(base, adapter)),
        ("Training loss", "training_loss", plot_training_loss(log_history)),
    ]
    return [(title, _save(fig, out / f"{name}.png", dpi)) for title, name, fig in figures if fig is not None]


def drift_notes(comparison: dict[str, Any]) -> list[str]:
    notes = []
    for task, e in ordered_tasks(comparison):
        na, sp, le = e["no_answer"], e["spelled_out"], e["lenient"]
        if na["adapter"] - na["base"] >= 0.10 or sp["adapter"] - sp["base"] >= 0.10:
            notes.append(f"{task}: the adapter's answer format drifted (no answer {100 * na['base']:.0f}% → "
                         f"{100 * na['adapter']:.0f}%, spells the word out {100 * sp['base']:.0f}% → "
                         f"{100 * sp['adapter']:.0f}%); the lenient reading changes by {100 * le['diff']:+.1f} points "
                         f"(95% CI {100 * le['ci95'][0]:+.1f} to {100 * le['ci95'][1]:+.1f}).")
    return notes


def write_report(run_dir: Path, title: str, comparison: dict[str, Any], base: dict[str, Any], adapter: dict[str, Any],
                 log_history: list[dict[str, Any]], config_yaml: str, train_info: dict[str, Any] | None,
                 dpi: int = 110) -> Path:
    out = run_dir / "report"
    plots = make_plots(base, adapter, log_history, out / "plots", dpi)
    table = comparison_table(comparison)
    notes = drift_notes(comparison)
    md = [f"# {title}", "", "## Answer", "",
          "Does LoRA training on spelling improve character position and count questions on hold-out words?", "",
          table]
    if notes:
        md += ["**Format drift.**", *[f"- {n}" for n in notes], ""]
    if train_info:
        md += [f"Training: {train_info['steps']} steps ({train_info['backend']}, {train_info['device']}, "
               f"{train_info['precision']}), final loss {train_info['final_loss']}, padding "
               f"{100 * train_info['batching']['padding_fraction']:.1f}%.", ""]
    md += ["## Plots", ""] + [f"### {t}\n\n![{t}](plots/{p.name})\n" for t, p in plots]
    md += ["## Config", "", "```yaml", config_yaml.rstrip(), "```", ""]
    atomic_write_text(out / "report.md", "\n".join(md))

    def img(p: Path) -> str:
        return "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode()

    rows = "".join(
        f"<tr><td>{t}</td><td>{e['strict']['n']}</td><td>{100 * e['strict']['base']:.1f}%</td>"
        f"<td>{100 * e['strict']['adapter']:.1f}%</td><td>{100 * e['strict']['diff']:+.1f} "
        f"[{100 * e['strict']['ci95'][0]:+.1f}, {100 * e['strict']['ci95'][1]:+.1f}]</td>"
        f"<td>{e['strict']['p_mcnemar']:.3g}</td><td>{100 * e['lenient']['base']:.1f}% → "
        f"{100 * e['lenient']['adapter']:.1f}%</td><td>{100 * e['no_answer']['base']:.1f}% → "
        f"{100 * e['no_answer']['adapter']:.1f}%</td></tr>" for t, e in ordered_tasks(comparison))
    body = [f"<h1>{html.escape(title)}</h1>", "<h2>Answer</h2>",
            "<table><tr><th>task</th><th>n</th><th>base</th><th>adapter</th><th>diff [95% CI], points</th>"
            "<th>McNemar p</th><th>lenient base → adapter</th><th>no answer base → adapter</th></tr>"
            f"{rows}</table>", "<ul>" + "".join(f"<li>{html.escape(e['verdict'])}</li>"
                                                for _, e in ordered_tasks(comparison)) + "</ul>"]
    if notes:
        body.append("<p><b>Format drift.</b></p><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes)
                    + "</ul>")
    body.append("<h2>Plots</h2>")
    body += [f"<h3>{html.escape(t)}</h3><img alt='{html.escape(t)}' src='{img(p)}'>" for t, p in plots]
    body.append(f"<h2>Config</h2><pre>{html.escape(config_yaml)}</pre>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title><style>"
            "body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
            "img{max-width:100%}pre{background:#f6f6f6;padding:1em;overflow:auto}</style></head><body>"
            + "\n".join(body) + "</body></html>")
    atomic_write_text(out / "report.html", page)
    return out
