"""Data report: what the spelling examples look like, from the files of a data folder.

The data stage writes it into ``<run_dir>/data/report/`` (flat, one folder):

  data_report.md     the one source of content
  data_report.html   that Markdown as a self-contained page (plots inlined; report.py's renderer)
  data_report.json   the numbers behind the tables
  examples_per_cell.png, tokens_and_shares.png

Sections: examples per category x style x separator (table and heatmap); tokens per example and
the answer-token share per template and per separator (tables and box plots); one real example
per cell.

**Tokens per example** are the stored ``n_tokens`` of every example (the chat-formatted example as
the trainer sees it, chat template included). **Answer-token share** = assistant tokens / (user +
assistant) tokens, the share of an example's text that carries the loss (loss is on the answer
only). The examples store no per-turn counts, so the share is counted with the model's tokenizer
(``count_tokens``, given by the caller) on a fixed sample: the first :data:`SAMPLE_PER_GROUP`
training examples of every template x separator pair in file order (every example of a small
build). A 20k build tokenizes ~8k texts instead of 41k. The chat template's constant per-example
overhead (n_tokens - user - assistant, the same for every example) is reported beside it.

Nothing here fails the caller because of a plot: a plot that raises is logged and left out.
"""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spelling_exp.analysis.report import _save, pyplot, render_markdown_page
from spelling_exp.analysis.tables import md_table
from spelling_exp.storage.io import atomic_write_json, atomic_write_text, iter_jsonl, read_json

log = logging.getLogger(__name__)

SAMPLE_PER_GROUP = 32  # examples per template x separator whose answer-token share is counted
SPLITS = (("train", "examples_train.jsonl"), ("val", "examples_val.jsonl"))
CATEGORY_COLORS = {"spelling_first": "#1f77b4", "word_first": "#ff7f0e"}
OTHER_COLOR = "#7f7f7f"
REPORT_FILES = ("data_report.md", "data_report.html", "data_report.json")


# ------------------------------------------------------------------------------ reading and counting
def read_examples(data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """{"train": rows, "val": rows} from a data folder (a missing file reads as no rows)."""
    out = {}
    for split, name in SPLITS:
        path = Path(data_dir) / name
        out[split] = list(iter_jsonl(path)) if path.is_file() else []
    return out


def _order(seen: Sequence[str], preferred: Sequence[str] = ()) -> list[str]:
    """``preferred`` order first (only names that occur), then the others alphabetically."""
    s = set(seen)
    return [x for x in dict.fromkeys(preferred) if x in s] + sorted(s - set(preferred))


def layout_of(rows: list[dict[str, Any]], layout: dict[str, Any] | None) -> dict[str, Any]:
    """Axis orders and the cells of the mix: from ``layout`` (the template config, see
    :func:`write_data_report`) where given, completed with whatever the rows contain."""
    layout = layout or {}
    templates = list(layout.get("templates") or [])
    cells = [c for c in (layout.get("cells") or []) if float(c.get("weight", 1)) > 0]
    seps_map = dict(layout.get("separators") or {})
    cats = _order({r["category"] for r in rows} | {c["category"] for c in cells},
                  [t["category"] for t in templates] or ["spelling_first", "word_first"])
    styles = _order({r["style"] for r in rows} | {c["style"] for c in cells}, [t["style"] for t in templates])
    seps = _order({r["separator"] for r in rows} | {c["separator"] for c in cells}, list(seps_map))
    tids = _order({r["template_id"] for r in rows}, [t["id"] for t in templates])
    tinfo = {t["id"]: t for t in templates}
    for r in rows:
        tinfo.setdefault(r["template_id"], {"id": r["template_id"], "category": r["category"], "style": r["style"]})
    # the cells that must appear: the mix's (weight > 0) and any that hold examples
    keys = {(c["category"], c["style"], c["separator"]) for c in cells} | {
        (r["category"], r["style"], r["separator"]) for r in rows}
    rows_cs = [(c, s) for c in cats for s in styles if any(k[:2] == (c, s) for k in keys)]
    cols = [p for p in seps if any(k[2] == p for k in keys)]
    tids = sorted(tids, key=lambda t: (cats.index(tinfo[t]["category"]) if tinfo[t]["category"] in cats else 99,
                                       tids.index(t)))
    return {"name": layout.get("name"), "categories": cats, "styles": styles, "separators": cols,
            "separator_strings": seps_map, "rows": rows_cs, "templates": tids, "template_info": tinfo,
            "cells": sorted(keys, key=lambda k: (cats.index(k[0]), styles.index(k[1]), seps.index(k[2])))}


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return {}
    p5, q1, med, q3, p95 = np.percentile(a, [5, 25, 50, 75, 95])
    return {"n": int(a.size), "mean": float(a.mean()), "min": float(a.min()), "p5": float(p5), "q1": float(q1),
            "median": float(med), "q3": float(q3), "p95": float(p95), "max": float(a.max())}


def sample_for_shares(rows: list[dict[str, Any]], per_group: int = SAMPLE_PER_GROUP) -> list[dict[str, Any]]:
    """The first ``per_group`` rows of every (template, separator) pair, in file order."""
    seen: Counter = Counter()
    out = []
    for r in rows:
        k = (r["template_id"], r["separator"])
        if seen[k] < per_group:
            seen[k] += 1
            out.append(r)
    return out


def answer_shares(sample: list[dict[str, Any]], count_tokens: Callable[[list[str]], list[int]]
                  ) -> list[dict[str, Any]]:
    """Per sampled example: user / assistant tokens, the answer-token share a / (u + a), and the
    chat template's overhead n_tokens - u - a (when n_tokens is stored)."""
    if not sample:
        return []
    counts = count_tokens([r["user"] for r in sample] + [r["assistant"] for r in sample])
    n = len(sample)
    if len(counts) != 2 * n:
        raise ValueError(f"count_tokens returned {len(counts)} counts for {2 * n} texts")
    out = []
    for i, r in enumerate(sample):
        u, a = int(counts[i]), int(counts[n + i])
        e = {"template_id": r["template_id"], "separator": r["separator"], "category": r["category"],
             "user_tokens": u, "answer_tokens": a, "share": a / (u + a) if u + a else float("nan")}
        if isinstance(r.get("n_tokens"), int):
            e["overhead"] = r["n_tokens"] - u - a
            e["share_of_sequence"] = a / r["n_tokens"] if r["n_tokens"] else float("nan")
        out.append(e)
    return out


def summarize(examples: dict[str, list[dict[str, Any]]], lay: dict[str, Any],
              shares: list[dict[str, Any]] | None) -> dict[str, Any]:
    """The numbers of the report (also written as data_report.json)."""
    train = examples["train"]
    counts = {split: Counter((r["category"], r["style"], r["separator"]) for r in rows)
              for split, rows in examples.items()}
    by_t, by_s = defaultdict(list), defaultdict(list)
    for r in train:
        if isinstance(r.get("n_tokens"), int):
            by_t[r["template_id"]].append(r["n_tokens"])
            by_s[r["separator"]].append(r["n_tokens"])
    sh_t, sh_s = defaultdict(list), defaultdict(list)
    for e in shares or []:
        sh_t[e["template_id"]].append(e["share"])
        sh_s[e["separator"]].append(e["share"])
    n_t = Counter(r["template_id"] for r in train)
    n_s = Counter(r["separator"] for r in train)
    info = lay["template_info"]
    out: dict[str, Any] = {
        "template_preset": lay.get("name"),
        "n_examples": {split: len(rows) for split, rows in examples.items()},
        "n_words": {split: len({r["word"] for r in rows}) for split, rows in examples.items()},
        "cells": {split: [{"category": c, "style": s, "separator": p, "n": counts[split].get((c, s, p), 0)}
                          for c, s, p in lay["cells"]] for split in examples},
        "by_template": [{"template_id": t, "category": info[t]["category"], "style": info[t]["style"],
                         "n": n_t.get(t, 0), "n_tokens": _quantiles(by_t.get(t, [])),
                         "answer_share": _quantiles(sh_t.get(t, []))} for t in lay["templates"]],
        "by_separator": [{"separator": p, "string": lay["separator_strings"].get(p), "n": n_s.get(p, 0),
                          "n_tokens": _quantiles(by_s.get(p, [])), "answer_share": _quantiles(sh_s.get(p, []))}
                         for p in lay["separators"]],
        "n_tokens": _quantiles([r["n_tokens"] for r in train if isinstance(r.get("n_tokens"), int)]),
    }
    if shares:
        # the sample is stratified by template x separator: weight each pair by its share of the training set
        pair_n = Counter((r["template_id"], r["separator"]) for r in train)
        pair_sh = defaultdict(list)
        for e in shares:
            pair_sh[(e["template_id"], e["separator"])].append(e["share"])
        total = sum(pair_n[k] for k in pair_sh)
        weighted = sum(pair_n[k] * sum(v) / len(v) for k, v in pair_sh.items()) / total if total else float("nan")
        overheads = sorted({e["overhead"] for e in shares if "overhead" in e})
        out["answer_share"] = {"sampled": len(shares), "per_group": SAMPLE_PER_GROUP, "mean_weighted": weighted,
                               **{k: v for k, v in _quantiles([e["share"] for e in shares]).items() if k != "n"},
                               "chat_overhead_tokens": overheads,
                               "mean_share_of_sequence": _quantiles(
                                   [e["share_of_sequence"] for e in shares if "share_of_sequence" in e]).get("mean")}
    return out


# ------------------------------------------------------------------------------ plots
def _sep_label(name: str, strings: dict[str, str]) -> str:
    s = strings.get(name)
    return name if s is None else f"{name}  {show_separator(s)}"


def show_separator(s: str) -> str:
    """A separator string made visible: spaces as ␣, a line break as ⏎, nothing as (nothing)."""
    return "(nothing)" if s == "" else "“" + s.replace(" ", "␣").replace("\n", "⏎") + "”"


def plot_cell_heatmap(summary: dict[str, Any], lay: dict[str, Any]) -> Any:
    cells = {(c["category"], c["style"], c["separator"]): c["n"] for c in summary["cells"]["train"]}
    rows, cols = lay["rows"], lay["separators"]
    if not rows or not cols:
        return None
    expected = set(lay["cells"])
    grid = [[cells.get((c, s, p), 0) for p in cols] for c, s in rows]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(min(13.0, 1.0 * len(cols) + 3.6), 0.46 * len(rows) + 1.9))
    top = max((v for row in grid for v in row), default=1) or 1
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=top * 1.25, aspect="auto")
    for i, (c, s) in enumerate(rows):
        for j, p in enumerate(cols):
            v = grid[i][j]
            text = f"{v:,}" if (c, s, p) in expected or v else "–"
            ax.text(j, i, text, ha="center", va="center", fontsize=8.5,
                    color="white" if v > 0.6 * top * 1.25 else "black")
    col_n = [sum(row[j] for row in grid) for j in range(len(cols))]
    ax.set_xticks(range(len(cols)), [f"{p}\n{show_separator(lay['separator_strings'][p])}\nn={n:,}"
                                     if p in lay["separator_strings"] else f"{p}\nn={n:,}"
                                     for p, n in zip(cols, col_n)])
    ax.set_yticks(range(len(rows)), [f"{c} · {s}  (n={sum(row):,})" for (c, s), row in zip(rows, grid)])
    ax.tick_params(axis="both", length=0)
    ax.grid(False)
    ax.set_xticks([j + 0.5 for j in range(len(cols) - 1)], minor=True)
    ax.set_yticks([i + 0.5 for i in range(len(rows) - 1)], minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.spines[["top", "right"]].set_visible(True)
    n = summary["n_examples"]["train"]
    ax.set_xlabel("separator between the letters")
    ax.set_title(f"Training examples per cell: category · style × separator (n={n:,})", fontsize=10.5)
    return fig


def _boxes(ax, groups: list[list[float]], colors: list[str], percent: bool = False) -> None:
    present = [i for i, g in enumerate(groups) if g]
    if not present:
        ax.text(0.5, 0.5, "not counted", transform=ax.transAxes, ha="center", va="center", color="#555555")
        return
    import matplotlib

    # matplotlib >= 3.10 names the direction `orientation`; `vert` is deprecated there, the only way before
    horizontal = ({"orientation": "horizontal"} if tuple(int(x) for x in matplotlib.__version__.split(".")[:2])
                  >= (3, 10) else {"vert": False})
    bp = ax.boxplot([groups[i] for i in present], positions=present, whis=(5, 95), showfliers=False,
                    widths=0.6, patch_artist=True, showmeans=True, **horizontal,
                    meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black",
                               "markersize": 4},
                    medianprops={"color": "black", "linewidth": 1.2})
    for patch, i in zip(bp["boxes"], present):
        patch.set_facecolor(colors[i])
        patch.set_alpha(0.75)
    if percent:
        from matplotlib.ticker import PercentFormatter

        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.grid(axis="x", alpha=0.3)
    ax.grid(axis="y", visible=False)


def _groups(examples, shares, field: str, names: list[str]) -> tuple[list[list[float]], list[list[float]]]:
    """(tokens per example, answer-token shares) of each name of ``field`` (template_id / separator)."""
    tok, sh = defaultdict(list), defaultdict(list)
    for r in examples["train"]:
        if isinstance(r.get("n_tokens"), int):
            tok[r[field]].append(r["n_tokens"])
    for e in shares or []:
        sh[e[field]].append(e["share"])
    return [tok[x] for x in names], [sh[x] for x in names]


def plot_tokens_and_shares(summary: dict[str, Any], lay: dict[str, Any], examples: dict[str, list[dict[str, Any]]],
                           shares: list[dict[str, Any]] | None) -> Any:
    """One figure, two rows of panels: per template (top) and per separator (bottom); tokens per
    example (left, every training example) and answer-token share (right, the sample)."""
    tids, seps = lay["templates"], lay["separators"]
    if not tids or not seps:
        return None
    info, strings = lay["template_info"], lay["separator_strings"]
    t_tok, t_sh = _groups(examples, shares, "template_id", tids)
    s_tok, s_sh = _groups(examples, shares, "separator", seps)
    if not any(t_tok + t_sh):
        return None
    n_t = {e["template_id"]: e["n"] for e in summary["by_template"]}
    n_s = {e["separator"]: e["n"] for e in summary["by_separator"]}
    rows = (
        ("template", [f"{t}  (n={n_t.get(t, 0):,})" for t in tids],
         [CATEGORY_COLORS.get(info[t]["category"], OTHER_COLOR) for t in tids], t_tok, t_sh),
        ("separator", [f"{_sep_label(p, strings)}  (n={n_s.get(p, 0):,})" for p in seps], [OTHER_COLOR] * len(seps),
         s_tok, s_sh),
    )
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11.5, 0.3 * (len(tids) + len(seps)) + 3.2), sharex="col",
                             gridspec_kw={"height_ratios": [len(tids) + 0.8, len(seps) + 0.8], "hspace": 0.08,
                                          "wspace": 0.04})
    for (what, labels, colors, tok, sh), (ax_t, ax_s) in zip(rows, axes):
        _boxes(ax_t, tok, colors)
        _boxes(ax_s, sh, colors, percent=True)
        ax_t.set_yticks(range(len(labels)), labels)
        ax_s.set_yticks(range(len(labels)), [])
        for ax in (ax_t, ax_s):
            ax.set_ylim(len(labels) - 0.5, -0.5)  # first row on top
        ax_t.set_ylabel(f"per {what}")
    axes[0][0].set_title("Tokens per example\n(every training example; chat-formatted, as trained)")
    axes[0][1].set_title(f"Answer-token share: assistant / (user + assistant)\n"
                         f"({len(shares or []):,} sampled training examples)")
    axes[1][0].set_xlabel("tokens")
    axes[1][1].set_xlabel("share of the example's text tokens in the answer (loss is on these)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.75) for c in CATEGORY_COLORS.values()]
    handles.append(plt.Line2D([], [], marker="D", linestyle="none", markerfacecolor="white",
                              markeredgecolor="black", markersize=4))
    axes[0][1].legend(handles, [*CATEGORY_COLORS, "mean"], loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      frameon=False, title="category")
    fig.suptitle("Length and answer-token share per template and per separator\n"
                 "(box: middle 50%, line: median, whiskers: 5th–95th percentile)", fontsize=10.5)
    return fig

# ------------------------------------------------------------------------------ page
def _pct(x: Any) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, (int, float)) and x == x else ""


def _num(x: Any, digits: int = 1) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) and x == x else ""


def _spread(q: dict[str, float], fmt: Callable[[Any], str]) -> str:
    return f"{fmt(q['median'])} [{fmt(q['p5'])}, {fmt(q['p95'])}]" if q else ""


def _visible(text: str) -> str:
    return text.replace("\n", "⏎")


def counts_table(summary: dict[str, Any], lay: dict[str, Any], split: str) -> list[str]:
    """Rows category · style, columns separators, cells: examples; totals on the right and below.
    A cell of the mix that got no example reads 0; a combination outside the mix reads –."""
    cells = {(c["category"], c["style"], c["separator"]): c["n"] for c in summary["cells"][split]}
    expected = set(lay["cells"])
    cols = lay["separators"]
    body, col_tot = [], [0] * len(cols)
    for c, s in lay["rows"]:
        vals = [cells.get((c, s, p), 0) for p in cols]
        col_tot = [a + b for a, b in zip(col_tot, vals)]
        body.append([c, s, *[str(v) if (c, s, p) in expected or v else "–" for v, p in zip(vals, cols)],
                     str(sum(vals))])
    body.append(["total", "", *[str(v) for v in col_tot], str(sum(col_tot))])
    return md_table(["category", "style", *cols, "total"], body)


def build_markdown(summary: dict[str, Any], lay: dict[str, Any], examples: dict[str, list[dict[str, Any]]],
                   plots: dict[str, str], manifest: dict[str, Any] | None) -> str:
    n, words = summary["n_examples"], summary["n_words"]
    preset = summary.get("template_preset")
    tok = summary["n_tokens"]
    ans = summary.get("answer_share")
    md = ["# Training data: spelling examples", ""]
    head = (f"{n['train']:,} training and {n['val']:,} validation examples ({words['train']:,} and {words['val']:,} "
            f"distinct words)" + (f", template preset **{preset}**" if preset else "")
            + f": {len(lay['templates'])} templates, {len(lay['cells'])} category × style × separator cells.")
    if manifest and manifest.get("tokenizer"):
        head += f" Tokenizer: `{manifest['tokenizer']}`."
    md += [head, ""]
    if tok:
        md += [f"- **Tokens per training example** (chat-formatted, as the trainer sees it): mean {tok['mean']:.1f}, "
               f"median {tok['median']:.0f}, 5th–95th percentile {tok['p5']:.0f}–{tok['p95']:.0f}, "
               f"range {tok['min']:.0f}–{tok['max']:.0f}."]
    if ans:
        over = ans.get("chat_overhead_tokens") or []
        over_txt = (f"; the chat template adds {over[0]} tokens to every example (not counted in the share"
                    + (f"; with it the answer is {_pct(ans['mean_share_of_sequence'])} of the sequence"
                       if ans.get("mean_share_of_sequence") is not None else "") + ")"
                    if len(over) == 1 else f"; chat template overhead {over[0]}–{over[-1]} tokens" if over else "")
        md += [f"- **Answer-token share** (assistant tokens / (user + assistant) tokens; the loss is on the answer "
               f"only): {_pct(ans['mean_weighted'])} on average, {_pct(ans['p5'])}–{_pct(ans['p95'])} "
               f"(5th–95th percentile){over_txt}. Counted with the tokenizer on "
               + (f"every training example ({ans['sampled']:,})." if ans["sampled"] >= n["train"] else
                  f"{ans['sampled']:,} training examples: the first {ans['per_group']} of each template × "
                  f"separator pair, weighted by the pair's share of the training set.")]
    else:
        md += ["- **Answer-token share**: not counted (no tokenizer was available when this report was written)."]
    extremes = []
    for label, entries, key in (("template", summary["by_template"], "template_id"),
                                ("separator", summary["by_separator"], "separator")):
        have = [e for e in entries if e["answer_share"]]
        if len(have) > 1:
            lo = min(have, key=lambda e: e["answer_share"]["mean"])
            hi = max(have, key=lambda e: e["answer_share"]["mean"])
            extremes.append(f"by {label} from {_pct(lo['answer_share']['mean'])} ({lo[key]}) to "
                            f"{_pct(hi['answer_share']['mean'])} ({hi[key]})")
    if extremes:
        md += [f"- The mean answer-token share ranges {'; '.join(extremes)}."]
    md += ["", "## Examples per cell", "",
           "Training examples per category · style × separator (the mix's weights, apportioned exactly; "
           "0: a cell of the mix that got no example, –: a combination outside the mix).", ""]
    md += counts_table(summary, lay, "train")
    if "examples_per_cell" in plots:
        md += ["", f"![Examples per cell]({plots['examples_per_cell']})"]
    if n["val"]:
        md += ["", f"Validation examples ({n['val']:,}; their words are disjoint from the training words):", ""]
        md += counts_table(summary, lay, "val")

    md += ["", "## Tokens and answer-token share per template", "",
           "Tokens: every training example's stored n_tokens, median [5th, 95th percentile]. Answer share: "
           "assistant / (user + assistant) tokens of the sampled examples.", ""]
    body = []
    for e in summary["by_template"]:
        t, s = e["n_tokens"], e["answer_share"]
        body.append([e["template_id"], e["category"], e["style"], str(e["n"]), _num(t.get("mean")),
                     _spread(t, lambda x: f"{x:.0f}"), _pct(s.get("mean")), _spread(s, _pct), str(s.get("n", 0))])
    md += md_table(["template", "category", "style", "examples", "tokens: mean", "tokens: median [5%, 95%]",
                    "answer share: mean", "answer share: median [5%, 95%]", "sampled"], body)

    md += ["", "## Tokens and answer-token share per separator", "",
           "The separator is the string between the letters of the spelling (␣ = a space, ⏎ = a line break).", ""]
    body = []
    for e in summary["by_separator"]:
        t, s = e["n_tokens"], e["answer_share"]
        body.append([e["separator"], show_separator(e["string"]) if e["string"] is not None else "", str(e["n"]),
                     _num(t.get("mean")), _spread(t, lambda x: f"{x:.0f}"), _pct(s.get("mean")), _spread(s, _pct),
                     str(s.get("n", 0))])
    md += md_table(["separator", "string", "examples", "tokens: mean", "tokens: median [5%, 95%]",
                    "answer share: mean", "answer share: median [5%, 95%]", "sampled"], body)
    if "tokens_and_shares" in plots:
        md += ["", f"![Tokens and answer-token share]({plots['tokens_and_shares']})"]

    md += ["", "## What a format looks like", "",
           "One real training example per cell (the first in the file), as rendered (⏎ marks a line break).", ""]
    first: dict[tuple, dict[str, Any]] = {}
    for r in examples["train"]:
        first.setdefault((r["category"], r["style"], r["separator"]), r)
    body = [[c, s, p, r["template_id"], _visible(r["user"]), _visible(r["assistant"])]
            for (c, s, p) in lay["cells"] if (r := first.get((c, s, p)))]
    md += md_table(["category", "style", "separator", "template", "user", "assistant"], body)
    return "\n".join(md) + "\n"


def write_data_report(data_dir: Path, out: Path, *, layout: dict[str, Any] | None = None,
                      count_tokens: Callable[[list[str]], list[int]] | None = None, dpi: int = 110) -> Path:
    """Write the data report of ``data_dir`` (a data stage's folder) into ``out``; returns the HTML path.

    ``layout``: the template config, for axis order and the mix's cells: {"name", "templates":
    [{"id", "category", "style"}] in library order, "separators": {name: string}, "cells":
    [{"category", "style", "separator", "weight"}]}; without it, the order comes from the rows.
    ``count_tokens(texts) -> [n]``: the model tokenizer's token counts (no special tokens); without
    it, or if it fails, the answer-token share is left out with a warning.
    """
    data_dir, out = Path(data_dir), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    examples = read_examples(data_dir)
    lay = layout_of(examples["train"] + examples["val"], layout)
    shares = None
    if count_tokens is not None:
        try:
            shares = answer_shares(sample_for_shares(examples["train"]), count_tokens)
        except Exception as e:  # a report never stops the data stage
            log.warning("data report: answer-token share not counted (%s: %s)", type(e).__name__, e)
    summary = summarize(examples, lay, shares)
    manifest_path = data_dir / "manifest.json"
    manifest = read_json(manifest_path) if manifest_path.is_file() else None

    plots: dict[str, str] = {}
    for name, make in (("examples_per_cell", lambda: plot_cell_heatmap(summary, lay)),
                       ("tokens_and_shares", lambda: plot_tokens_and_shares(summary, lay, examples, shares))):
        try:
            fig = make()
            if fig is not None:
                plots[name] = _save(fig, out / f"{name}.png", dpi).name
        except Exception as e:  # a plot never fails the report
            log.warning("data report: plot %s left out (%s: %s)", name, type(e).__name__, e)
            try:
                pyplot().close("all")
            except Exception:
                pass
    md_text = build_markdown(summary, lay, examples, plots, manifest)
    atomic_write_text(out / "data_report.md", md_text)
    title = "Training data" + (f": {summary['template_preset']}" if summary.get("template_preset") else "")
    atomic_write_text(out / "data_report.html", render_markdown_page(md_text, title, out))
    atomic_write_json(out / "data_report.json", {**summary, "plots": plots})
    return out / "data_report.html"
