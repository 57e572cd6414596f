"""Run report: report.md and a self-contained report.html (plots embedded), answer first.

Order: the answer per task (base, adapter, difference with 95% CI, McNemar p, verdict), the
format-drift readings beside it, then plots (accuracy per task; by word length; by position;
by true count; count confusion heatmaps; no-answer / spelled-out rates; training loss), then
the resolved config.

One source of content: report.md. report.html is that Markdown rendered with the ``markdown``
library, its plot images inlined as data URIs, so the page needs nothing beside it.

The breakdowns in metrics.json are dicts keyed by strings, and JSON round-trips sort keys
alphabetically ("10" < "4"); they are put back in their natural order on read
(:func:`natural_key`), and sparse numeric bins are merged (:func:`merge_sparse_bins`) so that
no point on a plot stands on a handful of questions.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from spelling_exp import tasks as task_registry
from spelling_exp.analysis.compare import comparison_table, ordered_tasks
from spelling_exp.analysis.stats import wilson_ci
from spelling_exp.storage.io import atomic_write_text

BASE_COLOR, ADAPTER_COLOR = "#7f7f7f", "#1f77b4"
MODELS = (("base model", "base", BASE_COLOR, "s"), ("LoRA adapter", "adapter", ADAPTER_COLOR, "o"))
CONTROL_COLOR = "#9467bd"  # the placebo adapter (shuffled spellings)
RANDOM_COLOR = "#bcbd22"  # the random-letters adapter (format only)
MIN_BIN_N = 10  # bins with fewer questions are merged with a neighbour
STRATA = ("first", "middle", "last")
_NUMERIC_LABEL = re.compile(r"(?P<pre>[≤≥<>]=?)?\s*(?P<a>[+-]?\d+(?:\.\d+)?)(?:\s*[–-]\s*(?P<b>\d+(?:\.\d+)?))?"
                            r"(?P<plus>\+)?")
_INT_LABEL = re.compile(r"[+-]?\d+")


# ------------------------------------------------------------------------------ bins in their natural order
def natural_key(label: Any) -> tuple[int, float, int, str]:
    """Sort key for breakdown labels: strata first / middle / last; numbers numerically
    ("≤6" < "7" < "10–11" < "13+", "3" < "3+"); other words alphabetically; "none" last."""
    s = str(label).strip()
    if s in STRATA:
        return 0, float(STRATA.index(s)), 0, s
    m = _NUMERIC_LABEL.fullmatch(s)
    if m:
        pre = m["pre"] or ""
        tie = -1 if pre[:1] in ("≤", "<") else 2 if pre[:1] in ("≥", ">") else 1 if m["plus"] else 0
        return 1, float(m["a"]), tie, s
    if s.lower() == "none":
        return 3, 0.0, 0, s
    return 2, 0.0, 0, s


def sorted_bins(bins: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """The bins of one breakdown in natural order; entries that are not bins are skipped."""
    items = [(str(k), v) for k, v in (bins or {}).items() if isinstance(v, dict)]
    return sorted(items, key=lambda kv: natural_key(kv[0]))


def _k(b: dict[str, Any]) -> float:
    """A bin's summed question scores: an integer count with one reply per question, possibly
    fractional with several."""
    k = b.get("k")
    if not isinstance(k, (int, float)):
        k = float(b.get("rate", 0.0)) * int(b.get("n", 0))
    return int(k) if float(k).is_integer() else float(k)


def make_bin(k: float, n: int) -> dict[str, Any]:
    """{"n", "k", "rate", "ci95"} with the Wilson score interval (for a fractional k, questions
    with several replies, Wilson on the pooled score: somewhat conservative)."""
    return {"n": n, "k": k, "rate": k / n if n else 0.0, "ci95": list(wilson_ci(k, n))}


def merge_groups(counts: list[tuple[str, int]], min_n: int = MIN_BIN_N) -> list[tuple[str, list[str]]]:
    """[(label, member keys)]: adjacent integer bins merged until each holds >= min_n questions.

    ``counts`` is [(key, n)] in axis order. The sparsest bin is merged with its sparser
    neighbour, repeatedly. A merged tail reads "13+", a merged head "≤6", a merged middle
    "10–11". Axes that are not all integers (strata, "3+") are left alone; "none" stays apart.
    """
    ints = [(k, n) for k, n in counts if _INT_LABEL.fullmatch(k)]
    rest = [k for k, _ in counts if not _INT_LABEL.fullmatch(k)]
    if min_n <= 1 or any(k.lower() != "none" for k in rest):
        return [(k, [k]) for k, _ in counts]
    groups, ns = [[k] for k, _ in ints], [n for _, n in ints]
    while len(groups) > 1:
        sparse = [i for i, n in enumerate(ns) if n < min_n]
        if not sparse:
            break
        i = min(sparse, key=lambda i: ns[i])
        j = 1 if i == 0 else i - 1 if i == len(groups) - 1 or ns[i - 1] < ns[i + 1] else i + 1
        a, b = sorted((i, j))
        groups[a:b + 1] = [groups[a] + groups[b]]
        ns[a:b + 1] = [ns[a] + ns[b]]
    out = []
    for gi, g in enumerate(groups):
        if len(g) == 1:
            label = g[0]
        elif gi == len(groups) - 1 and gi > 0:
            label = f"{g[0]}+"
        elif gi == 0 and len(groups) > 1:
            label = f"≤{g[-1]}"
        else:
            label = f"{g[0]}–{g[-1]}"
        out.append((label, g))
    return out + [(k, [k]) for k in rest]


def merge_sparse_bins(bins: dict[str, Any] | None, min_n: int = MIN_BIN_N,
                      groups: list[tuple[str, list[str]]] | None = None) -> dict[str, dict[str, Any]]:
    """The bins in natural order with sparse numeric ones merged (see :func:`merge_groups`); a
    merged bin's rate and Wilson interval are recomputed from the summed k and n."""
    items = sorted_bins(bins)
    by_key = dict(items)
    if groups is None:
        groups = merge_groups([(k, int(b.get("n", 0))) for k, b in items], min_n)
    out: dict[str, dict[str, Any]] = {}
    for label, members in groups:
        present = [by_key[m] for m in members if m in by_key]
        if len(present) == 1 and len(members) == 1:
            out[label] = dict(present[0])
        elif present:
            out[label] = make_bin(sum(_k(b) for b in present), sum(int(b.get("n", 0)) for b in present))
    return out


# ------------------------------------------------------------------------------ plots
def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import logging

    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # its INFO lines about category axes are noise
    import matplotlib.pyplot as plt

    plt.rcParams.update({"axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
                         "axes.grid.axis": "y", "grid.alpha": 0.3, "axes.titlesize": 11, "axes.labelsize": 9.5,
                         "xtick.labelsize": 8.5, "ytick.labelsize": 8.5, "legend.fontsize": 8.5})
    return plt


def _save(fig, path: Path, dpi: int) -> Path:
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(suffix=".png", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; a report is for reading
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    os.replace(tmp, path)
    return path


def percent_axis(ax, top: float = 1.0, label: str = "strict accuracy") -> None:
    from matplotlib.ticker import PercentFormatter

    ax.set_ylim(0, top)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylabel(label)


def y_top(values: list[float]) -> float:
    """Upper y limit: the highest interval end plus a margin, in steps of 10%, at least 50%."""
    hi = max(values, default=0.0)
    return min(1.0, max(0.5, (int((hi + 0.08) * 10) + 1) / 10))


def _legend_right(ax) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _tasks(m: dict[str, Any]) -> dict[str, Any]:
    t = m.get("tasks")
    return t if isinstance(t, dict) else {}


def _rate(m: dict[str, Any], task: str, key: str) -> dict[str, Any]:
    b = _tasks(m).get(task, {}).get(key)
    return b if isinstance(b, dict) else {}


def _err(bins: list[dict[str, Any]]) -> list[list[float]]:
    ys = [float(b.get("rate", 0.0)) for b in bins]
    cis = [b.get("ci95") or [y, y] for b, y in zip(bins, ys)]
    return [[max(0.0, y - ci[0]) for y, ci in zip(ys, cis)], [max(0.0, ci[1] - y) for y, ci in zip(ys, cis)]]


def best_baseline(m: dict[str, Any], task: str) -> float | None:
    """The rate of a task's best trivial baseline (metrics ``baselines``), if recorded."""
    b = _tasks(m).get(task, {}).get("baselines")
    if not isinstance(b, dict) or not b.get("best"):
        return None
    rate = ((b.get("rules") or {}).get(b["best"]) or {}).get("rate")
    return float(rate) if isinstance(rate, (int, float)) else None


def _forced_choice_rate(m: dict[str, Any], scope: str) -> float | None:
    fc = m.get("forced_choice") or {}
    entry = fc.get("overall") if scope == "all tasks" else (fc.get("tasks") or {}).get(scope)
    return (entry or {}).get("accuracy", {}).get("rate")


def plot_accuracy_by_task(base, adapter, control=None, random=None) -> Any:
    tasks = [t for t in task_registry.ordered(_tasks(base)) if _rate(base, t, "accuracy")]
    if not tasks:
        return None
    plt = pyplot()
    scopes = [(t, lambda m, key, t=t: _rate(m, t, key)) for t in tasks]
    if isinstance(base.get("overall"), dict) and len(tasks) > 1:
        scopes.append(("all tasks", lambda m, key: m.get("overall", {}).get(key) or {}))
    arms = [(label, base if field == "base" else adapter, color) for label, field, color, _ in MODELS]
    if control is not None or random is not None:  # the control arms sit between base and spelling adapter
        arms = [arms[0], *([("random-letters adapter", random, RANDOM_COLOR)] if random is not None else []),
                *([("placebo adapter", control, CONTROL_COLOR)] if control is not None else []),
                ("spelling adapter", adapter, arms[1][2])]
    fig, ax = plt.subplots(figsize=(max(5.5, (0.4 * len(arms) + 0.8) * len(scopes) + 2.5), 3.8))
    w = 0.76 / len(arms)
    highs = []
    for j, (label, m, color) in enumerate(arms):
        bins = [get(m, "accuracy") for _, get in scopes]
        rates = [float(b.get("rate", 0.0)) for b in bins]
        xs = [i + (j - (len(arms) - 1) / 2) * w for i in range(len(scopes))]
        ax.bar(xs, rates, w, yerr=_err(bins), capsize=4, label=f"{label}: strict", color=color,
               error_kw={"elinewidth": 1, "ecolor": "#333333"})
        for x, r in zip(xs, rates):
            inside = r >= 0.07
            ax.text(x, 0.01 if inside else r + 0.01, f"{100 * r:.1f}%", ha="center", va="bottom",
                    fontsize=8 if len(arms) <= 3 else 7,
                    color="white" if inside else "black", fontweight="bold")
        highs += [(b.get("ci95") or [0, r])[1] for b, r in zip(bins, rates)]
        fc = [_forced_choice_rate(m, s) for s, _ in scopes]
        if any(v is not None for v in fc):  # the parser-free score beside each bar
            pts = [(x, v) for x, v in zip(xs, fc) if v is not None]
            ax.scatter([x for x, _ in pts], [v for _, v in pts], marker="D", s=22, color="#222222", zorder=5,
                       label="forced choice (no parser)" if j == 0 else None)
            highs += [v for _, v in pts]
    first = True
    for i, (t, _) in enumerate(scopes):
        rate = best_baseline(base, t)
        if rate is not None:
            ax.hlines(rate, i - 0.43, i + 0.43, colors="black", linestyles="--", linewidth=1.2, zorder=4,
                      label="best trivial baseline" if first else None)
            highs.append(rate)
            first = False
    ns = [get(base, "accuracy").get("n") for _, get in scopes]
    ax.set_xticks(range(len(scopes)), [f"{s}\nn={n}" if n is not None else s for (s, _), n in zip(scopes, ns)])
    percent_axis(ax, y_top(highs), "accuracy on hold-out questions")
    who = ("base model vs the control arms vs spelling adapter" if control is not None or random is not None
           else "base model vs LoRA adapter")
    ax.set_title(f"Accuracy per task: {who}\n(bars: strict accuracy with 95% interval; diamonds: forced choice)",
                 fontsize=10.5)
    _legend_right(ax)
    return fig


def plot_breakdown(base, adapter, task: str, key: str, xlabel: str, title: str, min_n: int = MIN_BIN_N) -> Any:
    """Strict accuracy per bin of one breakdown, base and adapter side by side (categorical axis:
    markers with 95% intervals, no lines); sparse numeric bins merged; n under each tick."""
    bd, ad = _rate(base, task, key), _rate(adapter, task, key)
    if not sorted_bins(bd):
        return None
    counts: dict[str, int] = {}
    for d in (bd, ad):
        for k, b in sorted_bins(d):
            counts[k] = max(counts.get(k, 0), int(b.get("n", 0)))
    groups = merge_groups(sorted(counts.items(), key=lambda kv: natural_key(kv[0])), min_n)
    labels = [label for label, _ in groups]
    merged = {field: merge_sparse_bins(d, groups=groups) for field, d in (("base", bd), ("adapter", ad))}
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(min(11.0, max(5.5, 0.62 * len(labels) + 2.8)), 3.8))
    off = 0.16
    highs = []
    for j, (label, field, color, marker) in enumerate(MODELS):
        present = [(i, merged[field][lab]) for i, lab in enumerate(labels) if lab in merged[field]]
        if not present:
            continue
        bins = [b for _, b in present]
        ax.errorbar([i + (j - 0.5) * 2 * off for i, _ in present], [float(b.get("rate", 0.0)) for b in bins],
                    yerr=_err(bins), fmt=marker, linestyle="none", capsize=3, markersize=6, color=color,
                    label=label, elinewidth=1.2)
        highs += [(b.get("ci95") or [0, b.get("rate", 0)])[1] for b in bins]
    ticks = []
    for lab in labels:
        b = merged["base"].get(lab) or merged["adapter"].get(lab) or {}
        ticks.append(f"{lab}\nn={b.get('n', '?')}")
    ax.set_xticks(range(len(labels)), ticks)
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.grid(axis="x", visible=False)
    ax.set_xlabel(xlabel + (f"  (bins with < {min_n} questions merged)" if any(len(g) > 1 for _, g in groups)
                            else ""))
    top = y_top(highs)
    percent_axis(ax, top, "strict accuracy\n(95% interval)")
    ax.set_ylim(-0.025 * top, top)  # a marker at 0% stays whole above the axis
    ax.set_title(title)
    _legend_right(ax)
    return fig


def _confusion_axes(confs: list[dict[str, Any]]) -> tuple[list[str], list[str], int | None]:
    """(true counts, predicted columns, cap): numeric predictions 0..cap shown one by one, larger
    ones pooled in "cap+1+", then any other labels, "none" last."""
    truths = sorted({str(t) for c in confs for t, row in c.items() if isinstance(row, dict)}, key=natural_key)
    preds = {str(p) for c in confs for row in c.values() if isinstance(row, dict) for p in row}
    nums = sorted(int(p) for p in preds if _INT_LABEL.fullmatch(p))
    true_nums = [int(t) for t in truths if _INT_LABEL.fullmatch(t)]
    cap = None
    cols: list[str] = []
    if nums:
        cap = max(true_nums, default=0) + 3
        lo = min(0, nums[0])
        cols = [str(v) for v in range(lo, min(cap, nums[-1]) + 1)]
        if nums[-1] > cap:
            cols.append(f"{cap + 1}+")
        else:
            cap = None
    others = sorted((p for p in preds if not _INT_LABEL.fullmatch(p)), key=natural_key)
    return truths, cols + others, cap


def plot_confusion(base, adapter, task: str = "count") -> Any:
    confs = [_rate(m, task, "confusion") for m in (base, adapter)]
    if not confs[0]:
        return None
    truths, cols, cap = _confusion_axes(confs)
    if not truths or not cols:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(min(14.0, max(9.0, 0.42 * len(cols) * 2 + 2.5)),
                                            0.45 * len(truths) + 2.6),
                             layout="constrained")
    for ax, (label, _, _, _), conf in zip(axes, MODELS, confs):
        grid = []
        for t in truths:
            row = conf.get(t) if isinstance(conf.get(t), dict) else {}
            cells = dict.fromkeys(cols, 0)
            for p, v in row.items():
                p = str(p)
                col = f"{cap + 1}+" if cap is not None and _INT_LABEL.fullmatch(p) and int(p) > cap else p
                if col in cells and isinstance(v, (int, float)):
                    cells[col] += int(v)
            grid.append([cells[c] for c in cols])
        shares = [[v / (sum(row) or 1) for v in row] for row in grid]
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(cols)), cols)
        ax.set_yticks(range(len(truths)), [f"{t} (n={sum(row)})" for t, row in zip(truths, grid)])
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                            color="white" if shares[i][j] > 0.5 else "black")
                if cols[j] == truths[i]:
                    ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="#d62728", lw=1.5,
                                               clip_on=False))
        ax.grid(False)
        ax.spines[["top", "right"]].set_visible(True)
        ax.set_xlabel("answered count (\"none\": no parseable answer)")
        ax.set_ylabel("true count")
        ax.set_title(f"{label}")
    fig.suptitle("Count questions: answered vs true count (cells: replies; shade: share of the row; "
                 "red box: correct)", fontsize=10.5)
    return fig


def plot_format_drift(base, adapter) -> Any:
    tasks = task_registry.ordered(_tasks(base))
    if not tasks:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.5, 2.0 * len(tasks) + 2.5), 3.8))
    w = 0.2
    bars = (("base: no parseable answer", base, "no_answer", "#c7c7c7", None),
            ("adapter: no parseable answer", adapter, "no_answer", "#ff7f0e", None),
            ("base: spells the word out", base, "spelled_out", "#c7c7c7", "//"),
            ("adapter: spells the word out", adapter, "spelled_out", "#2ca02c", "//"))
    highs = []
    for j, (label, m, key, color, hatch) in enumerate(bars):
        bins = [_rate(m, t, key) for t in tasks]
        ax.bar([i + (j - 1.5) * w for i in range(len(tasks))], [float(b.get("rate", 0.0)) for b in bins], w,
               yerr=_err(bins), capsize=2, label=label, color=color, hatch=hatch, edgecolor="#555555",
               linewidth=0.5, error_kw={"elinewidth": 0.8})
        highs += [(b.get("ci95") or [0, b.get("rate", 0)])[1] for b in bins]
    ns = [_rate(base, t, "no_answer").get("n") for t in tasks]
    ax.set_xticks(range(len(tasks)), [f"{t}\nn={n}" if n is not None else t for t, n in zip(tasks, ns)])
    percent_axis(ax, y_top(highs), "share of questions\n(95% interval)")
    ax.set_title("Format drift: replies without a parseable answer,\nand replies that spell the word out")
    _legend_right(ax)
    return fig


def plot_training_loss(log_history: list[dict[str, Any]]) -> Any:
    points = [(h["step"], h["loss"]) for h in log_history if isinstance(h, dict) and "loss" in h and "step" in h]
    if not points:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(*zip(*points), marker="." if len(points) < 50 else None, color=ADAPTER_COLOR, label="training batches")
    val = [(h["step"], h["eval_loss"]) for h in log_history if isinstance(h, dict) and "eval_loss" in h
           and "step" in h]
    if val:
        ax.plot(*zip(*val), marker="o", color="#ff7f0e", label="validation (unseen words)")
    ax.legend(frameon=False)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("cross-entropy loss\n(answer tokens)")
    ax.set_title("LoRA training loss")
    return fig


def make_plots(base, adapter, log_history, out: Path, dpi: int = 110, control=None,
               random=None) -> list[tuple[str, Path]]:
    """Every plot that has data, saved as PNG in ``out``: [(title, path)] in report order."""
    out.mkdir(parents=True, exist_ok=True)
    figures = [
        ("Accuracy per task", "accuracy_by_task", plot_accuracy_by_task(base, adapter, control, random)),
        ("Format drift (exploratory)", "format_drift", plot_format_drift(base, adapter)),
    ]
    # Each task's breakdowns (tasks/<task>.py declares them): every breakdown is exploratory, and
    # its heading and title say so (analysis/compare.py declares the primary analysis).
    present = task_registry.ordered(_tasks(base))
    for task in present:
        for b in task_registry.get(task).breakdowns:
            heading = "stratum" if b.key == "by_stratum" else b.what.removeprefix("by ")
            figures.append((f"{task.capitalize()} accuracy by {heading} (exploratory)", b.name,
                            plot_breakdown(base, adapter, task, b.key, b.xlabel,
                                           f"{task.capitalize()} questions: strict accuracy {b.what} (exploratory)")))
    figures += [(f"{task.capitalize()} confusion (exploratory)", f"{task}_confusion",
                 plot_confusion(base, adapter, task))
                for task in present if task_registry.get(task).confusion_plot]
    figures.append(("Training loss", "training_loss", plot_training_loss(log_history)))
    return [(title, _save(fig, out / f"{name}.png", dpi)) for title, name, fig in figures if fig is not None]


# ------------------------------------------------------------------------------ page
PAGE_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:$WIDTH;margin:2em auto;padding:0 1em;
 line-height:1.45;color:#1a1a1a}
h1{font-size:1.6em;margin-bottom:.3em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{margin-top:1.4em}
.table-wrap{overflow:auto;max-height:85vh;margin:1em 0}
table{border-collapse:collapse;font-size:.92em;font-variant-numeric:tabular-nums}
th,td{border:1px solid #c8c8c8;padding:4px 10px;white-space:nowrap}
.num{text-align:right}.txt{text-align:left}
td.txt{white-space:normal;min-width:6em}
th{background:#eef1f5;position:sticky;top:0;z-index:1;vertical-align:bottom;white-space:normal}
tbody tr:nth-child(even){background:#fafafa}
tbody tr:hover{background:#f0f6ff}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:.85em;line-height:1.3}
summary{cursor:pointer;color:#1f5fa8;margin:.5em 0}
code{font-size:.92em}
"""


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}
    return f"data:{mime[path.suffix.lower()]};base64," + base64.b64encode(path.read_bytes()).decode()


_CELL = re.compile(r"<(t[hd])([^>]*)>(.*?)</\1>", re.S)
_NUMERIC_CELL = re.compile(r"([+\-−]?\d[^A-Za-z]*)?")  # a number, maybe with an interval or "→ y"; no words


def _align_columns(table: str) -> str:
    """Numbers right-aligned, words left: a column whose body cells are all numbers (with an
    interval or an arrow at most) or empty is numeric, its cells get class 'num' and keep on one
    line; the others get 'txt' and may wrap."""
    rows = re.findall(r"<tr>.*?</tr>", table, re.S)
    numeric: dict[int, bool] = {}
    for row in rows:
        for i, (tag, _, text) in enumerate(_CELL.findall(row)):
            if tag == "td":
                plain = html.unescape(re.sub(r"<[^>]+>", "", text)).strip()
                numeric[i] = numeric.get(i, True) and bool(_NUMERIC_CELL.fullmatch(plain))

    def mark(row: re.Match) -> str:
        count = iter(range(1 << 30))
        return _CELL.sub(lambda c: (f"<{c.group(1)} class='{'num' if numeric.get(next(count)) else 'txt'}'"
                                    f"{c.group(2)}>{c.group(3)}</{c.group(1)}>"), row.group(0))

    return re.sub(r"<tr>.*?</tr>", mark, table, flags=re.S)


def render_markdown_page(md_text: str, title: str, base_dir: Path, width: str = "1200px") -> str:
    """A self-contained HTML page from Markdown: tables and fenced code rendered, every local image
    (relative to ``base_dir``) inlined as a data URI, tables scrollable with a sticky header."""
    import markdown

    body = markdown.markdown(md_text, extensions=["tables", "fenced_code"], output_format="html")
    root = Path(base_dir).resolve()

    def inline(m: re.Match) -> str:
        src = html.unescape(m.group(1))
        path = (root / src).resolve()
        if "://" in src or not path.is_relative_to(root) or not path.is_file() or path.suffix.lower() not in (
                ".png", ".svg", ".jpg", ".jpeg"):
            return m.group(0)
        return f"src='{_data_uri(path)}'"

    body = re.sub(r'src="([^"]*)"', inline, body)
    body = re.sub(r"<table>.*?</table>", lambda m: _align_columns(m.group(0)), body, flags=re.S)
    body = body.replace("<table>", "<div class='table-wrap'><table>").replace("</table>", "</table></div>")
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{PAGE_CSS.replace('$WIDTH', width)}</style></head><body>\n"
            f"{body}\n</body></html>\n")


def drift_notes(comparison: dict[str, Any]) -> list[str]:
    notes = []
    for task, e in ordered_tasks(comparison):
        na, sp, fmt = e.get("no_answer"), e.get("spelled_out"), e.get("format")
        if not (na and sp and fmt):
            continue
        if na["adapter"] - na["base"] >= 0.10 or sp["adapter"] - sp["base"] >= 0.10:
            ba = fmt.get("both_answered")
            both = (f"; on the {ba['n']} questions both answered the difference is {100 * ba['diff']:+.1f} points "
                    f"(95% CI {100 * ba['ci95'][0]:+.1f} to {100 * ba['ci95'][1]:+.1f})" if ba else "")
            notes.append(f"{task}: the adapter's answer format drifted (no answer {100 * na['base']:.0f}% → "
                         f"{100 * na['adapter']:.0f}%, p={fmt['no_answer']['p']:.3g}; spells the word out "
                         f"{100 * sp['base']:.0f}% → {100 * sp['adapter']:.0f}%). Whatever the unreadable replies "
                         f"meant, the difference lies between {100 * fmt['bounds']['worst']['diff']:+.1f} and "
                         f"{100 * fmt['bounds']['best']['diff']:+.1f} points{both}.")
    return notes


def _setup_line(base: dict[str, Any]) -> str | None:
    meta = base.get("meta") if isinstance(base.get("meta"), dict) else {}
    s = meta.get("sampling") if isinstance(meta.get("sampling"), dict) else {}
    if not meta:
        return None
    how = ("greedy decoding" if s.get("greedy") else
           ", ".join(f"{k} {s[k]}" for k in ("temperature", "top_p", "top_k", "min_p") if k in s) or "sampling")
    samples = meta.get("n_samples")
    generation = (meta.get("identity") or {}).get("generation") or {}
    backend = f", backend {generation['backend']}" if generation.get("backend") else ""
    return (f"Evaluation: model {meta.get('model', '?')}{backend}, split {meta.get('split', '?')}, "
            f"{samples if samples is not None else '?'} sample(s) per question, {how}.")


def training_check_lines(infos: dict[str, dict[str, Any] | None]) -> list[str]:
    """One plain sentence per trained adapter: did its validation loss fall? A null result from an
    adapter whose loss did not fall cannot be told from a training that did not take."""
    lines = []
    for name, info in infos.items():
        if not info:
            continue
        v = info.get("validation")
        if not v:
            lines.append(f"{name}: no validation loss recorded (train.eval_steps=0), so nothing shows that "
                         "training took.")
        elif v["fell"]:
            lines.append(f"{name}: validation loss fell from {v['first']:.3f} (step {v['first_step']}) to "
                         f"{v['last']:.3f} (step {v['last_step']}).")
        else:
            lines.append(f"{name}: **validation loss did not fall** ({v['first']:.3f} at step {v['first_step']} → "
                         f"{v['last']:.3f} at step {v['last_step']}): the adapter may not have learned what it was "
                         "trained on, and a null result here cannot be told from a training that did not take.")
    return lines


def _number(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def write_report(run_dir: Path, title: str, comparison: dict[str, Any], base: dict[str, Any], adapter: dict[str, Any],
                 log_history: list[dict[str, Any]], config_yaml: str, train_info: dict[str, Any] | None,
                 dpi: int = 110, control: dict[str, Any] | None = None,
                 control_train_infos: dict[str, dict[str, Any] | None] | None = None,
                 random: dict[str, Any] | None = None) -> Path:
    """``control``: the placebo adapter's metrics, when the control arm ran (then spelling vs
    placebo is the headline); ``control_train_infos``: each control adapter's train_info.json (by
    label; None where that arm did not train here), for the training check."""
    out = run_dir / "report"
    plots = make_plots(base, adapter, log_history, out / "plots", dpi, control, random)
    table = comparison_table(comparison)
    notes = drift_notes(comparison)
    if "control" in comparison:
        intro = ("Does learning *spelling* make the model better at character position and count questions on "
                 "hold-out words, beyond what exposure to the answer format does? The placebo adapter was trained "
                 "exactly like the spelling adapter on wrongly ordered letters; spelling − placebo is the effect of "
                 "spelling knowledge (the headline), spelling − base the total effect. Points are percentage points.")
    else:
        intro = ("Does LoRA training on spelling improve character position and count questions on hold-out words? "
                 "Strict accuracy of the base model and of the LoRA adapter on the same questions; diff = adapter − "
                 "base in percentage points.")
    md = [f"# {title}", "", "## Answer", "", intro, "", table.rstrip("\n"), ""]
    if notes:
        md += ["**Format drift.**", "", *[f"- {n}" for n in notes], ""]
    setup = _setup_line(base)
    if setup:
        md += [setup, ""]
    if train_info:
        pad = (train_info.get("batching") or {}).get("padding_fraction")
        md += [f"Training: {train_info.get('steps', '?')} steps ({train_info.get('backend', '?')}, "
               f"{train_info.get('device', '?')}, {train_info.get('precision', '?')}), final loss "
               f"{_number(train_info.get('final_loss', '?'))}"
               + (f", padding {100 * pad:.1f}%." if isinstance(pad, (int, float)) else "."), ""]
    checks = training_check_lines({"spelling adapter": train_info, **(control_train_infos or {})})
    if checks:
        md += ["**Training check** (loss on held-out training examples, unseen words; not a study outcome):", "",
               *[f"- {line}" for line in checks], ""]
    md += ["## Plots", ""] + [f"### {t}\n\n![{t}](plots/{p.name})\n" for t, p in plots]
    md += ["## Config", "", "```yaml", config_yaml.rstrip(), "```", ""]
    md_text = "\n".join(md)
    atomic_write_text(out / "report.md", md_text)
    page = render_markdown_page(md_text, title, out)
    head, sep, tail = page.partition("<h2>Config</h2>")
    if sep and "<pre>" in tail:  # the long resolved config folds away; the page reads answer first
        pre, end, rest = tail.partition("</pre>")
        tail = pre.replace("<pre>", "<details><summary>Resolved config (click to show)</summary><pre>", 1) + end \
            + "</details>" + rest
    atomic_write_text(out / "report.html", head + sep + tail)
    return out
