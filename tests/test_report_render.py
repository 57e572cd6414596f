"""The run report and the sweep page as a reader sees them: breakdowns in their natural order,
sparse bins merged, categorical axes without connecting lines, report.md / comparison.md rendered
to real HTML tables with the plots inlined. Fast: fake metrics, no model."""
from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from spelling_exp.analysis import report as rp
from spelling_exp.analysis import sweep_report as sr
from spelling_exp.analysis.stats import wilson_ci

TASKS = ("position", "count")


# ------------------------------------------------------------------------------ fakes
def _bin(k: float, n: int) -> dict:
    return {"n": n, "k": k, "rate": k / n if n else 0.0, "ci95": list(wilson_ci(k, n))}


def _bins(spec: dict) -> dict:
    return {str(key): _bin(k, n) for key, (k, n) in spec.items()}


def _metrics(shift: int = 0) -> dict:
    """A metrics.json as read back from disk: every dict's keys in alphabetical order (as a JSON
    round-trip with sorted keys leaves them), plus keys this report does not know."""
    lengths = {4: (1, 2), 5: (1, 4), 6: (3, 13), 7: (2, 12), 8: (5, 25), 9: (4, 25), 10: (3, 19), 11: (3, 23),
               12: (5, 27), 13: (1, 6), 14: (0, 3), 15: (1, 2)}
    ks = {1: (19, 50), 2: (1, 7), 3: (0, 6), 4: (2, 9), 5: (1, 10), 6: (2, 11), 7: (1, 9), 8: (0, 12), 9: (2, 14),
          10: (0, 3), 11: (1, 8), 12: (0, 11)}
    common = {"accuracy": _bin(26 + shift, 150), "right_only_in_spelling": _bin(28 + shift, 150),
              "no_answer": _bin(35, 150), "spelled_out": _bin(2 + shift, 150), "ambiguous": _bin(1, 150),
              "truncated": _bin(0, 150), "questions": 150, "replies": 150, "some_future_key": {"x": {"y": 1}}}
    position = {**common, "by_word_length": _bins({k: (a + shift % 2, n) for k, (a, n) in lengths.items()}),
                "by_k": _bins(ks), "by_stratum": _bins({"first": (19, 50), "middle": (3, 50), "last": (4, 50)}),
                "by_word_tokens": _bins({2: (11, 43), 3: (13, 77), 4: (2, 27), 5: (0, 3)}),
                "error_offsets": {"+1": 6, "-1": 9, "-10": 3, "absent": 17, "none": 35},
                "baselines": {"best": "first letter of the word",
                              "rules": {"first letter of the word": {"n": 150, "k": 50, "rate": 1 / 3}}}}
    count = {**common, "by_word_length": _bins({k: (a, n) for k, (a, n) in lengths.items()}),
             "by_true_value": _bins({0: (2, 38), 1: (9, 38), 2: (7, 37), 3: (4, 33), 4: (0, 4)}),
             "by_stratum": _bins({0: (2, 38), 1: (9, 38), 2: (7, 37), "3+": (4, 37)}),
             "by_word_tokens": _bins({2: (2, 34), 3: (15, 72), 4: (5, 37), 5: (0, 7)}),
             "confusion": {"0": {"0": 2, "1": 7, "10": 3, "1111": 1, "none": 5}, "1": {"1": 9, "2": 5, "none": 6},
                           "2": {"1": 10, "2": 7, "21194": 1}, "3": {"2": 11, "3": 4}, "4": {"2": 3, "9": 1}},
             "mae": 2.5, "baselines": {"best": "constant 1", "rules": {"constant 1": {"n": 150, "k": 38,
                                                                                      "rate": 38 / 150}}}}
    m = {"meta": {"model": "tiny", "split": "test", "n_samples": 1, "sampling": {"greedy": False, "temperature": 0.6}},
         "overall": {"accuracy": _bin(48, 300), "right_only_in_spelling": _bin(50, 300)},
         "tasks": {"position": position, "count": count}}
    return json.loads(json.dumps(m, sort_keys=True))


def _paired(base: float, adapter: float, n: int = 150, analysis: str = "primary") -> dict:
    return {"n": n, "base": base, "adapter": adapter, "diff": adapter - base, "ci95": [adapter - base - 0.07,
                                                                                         adapter - base + 0.07],
            "p": 0.36, "p_mcnemar": 0.36, "test": "mcnemar_exact", "p_holm": 0.72, "mde80": 0.12,
            "analysis": analysis, "base_only_correct": 10, "adapter_only_correct": 16, "discordance": 0.17}


def _comparison() -> dict:
    """A comparison.json entry set that both the older and the newer comparison tables can read."""
    tasks = {}
    for t in TASKS:
        tasks[t] = {"strict": _paired(0.17, 0.21), "format": _format(),
                    "no_answer": {"base": 0.23, "adapter": 0.36}, "spelled_out": {"base": 0.01, "adapter": 0.15},
                    "ambiguous": {"base": 0.0, "adapter": 0.01}, "truncated": {"base": 0.0, "adapter": 0.0},
                    "best_baseline": {"name": "constant 1", "rate": 0.25},
                    "verdict": f"{t}: no significant difference (+4.0 points)."}
    return {"base_dir": "../eval_base", "adapter_dir": "../eval_adapter", "tasks": tasks, "primary": list(TASKS),
            "alpha": 0.05, "power": 0.8, "mde_alpha": 0.025,
            "overall": {"strict": _paired(0.16, 0.157, 300, "exploratory"), "format": _format(300)}}


def _format(n: int = 150) -> dict:
    return {"answered_accuracy": {"base": {"n": n - 30, "rate": 0.22}, "adapter": {"n": n - 50, "rate": 0.3}},
            "both_answered": _paired(0.22, 0.3, n - 60, "exploratory"),
            "bounds": {"worst": _paired(0.4, 0.21, n, "exploratory"), "best": _paired(0.17, 0.57, n, "exploratory")},
            "no_answer": _paired(0.23, 0.36, n, "exploratory")}


class _Tables(HTMLParser):
    """Per table: the number of cells in each row (header row first), and the img srcs."""

    def __init__(self):
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.imgs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("th", "td"):
            self.tables[-1][-1].append(tag)
        elif tag == "img":
            self.imgs.append(dict(attrs).get("src", ""))


def _parse(html_text: str) -> _Tables:
    p = _Tables()
    p.feed(html_text)
    return p


def _md_cells(line: str) -> int:
    return len(re.split(r"(?<!\\)\|", line.strip().strip("|")))


# ------------------------------------------------------------------------------ order and bins
def test_natural_order_numbers_strata_and_none_last():
    assert sorted(["10", "11", "4", "5", "6", "7", "8", "9"], key=rp.natural_key) == [
        "4", "5", "6", "7", "8", "9", "10", "11"]
    assert sorted(["last", "middle", "first"], key=rp.natural_key) == ["first", "middle", "last"]
    assert sorted(["3+", "2", "1", "0"], key=rp.natural_key) == ["0", "1", "2", "3+"]
    assert sorted(["3", "3+", "none", "10", "2"], key=rp.natural_key) == ["2", "3", "3+", "10", "none"]
    assert sorted(["13+", "≤6", "10–11", "7", "none", "absent"], key=rp.natural_key) == [
        "≤6", "7", "10–11", "13+", "absent", "none"]
    assert sorted(["+1", "-10", "-1", "0"], key=rp.natural_key) == ["-10", "-1", "0", "+1"]


def test_sorted_bins_reads_a_json_round_trip_in_natural_order_and_skips_unknown_entries():
    bins = json.loads(json.dumps({str(k): _bin(1, 10) for k in (4, 10, 12, 5)} | {"note": "x"}, sort_keys=True))
    assert list(bins)[:2] == ["10", "12"]  # what the plots used to show
    assert [k for k, _ in rp.sorted_bins(bins)] == ["4", "5", "10", "12"]
    assert rp.sorted_bins(None) == []


def test_merge_sparse_bins_keeps_totals_and_recomputes_rates():
    bins = _metrics()["tasks"]["position"]["by_word_length"]
    merged = rp.merge_sparse_bins(bins, min_n=10)
    assert list(merged) == ["≤6", "7", "8", "9", "10", "11", "12", "13+"]
    assert sum(b["n"] for b in merged.values()) == sum(b["n"] for b in bins.values())
    assert sum(b["k"] for b in merged.values()) == sum(b["k"] for b in bins.values())
    assert all(b["n"] >= 10 for b in merged.values())
    tail = merged["13+"]
    assert (tail["n"], tail["k"]) == (6 + 3 + 2, 1 + 0 + 1)
    assert tail["rate"] == pytest.approx(2 / 11)
    assert tail["ci95"] == pytest.approx(list(wilson_ci(2, 11)))
    assert merged["≤6"]["n"] == 2 + 4 + 13 and merged["≤6"]["rate"] == pytest.approx(5 / 19)
    assert merged["8"] == bins["8"]  # a bin with enough questions is left as it was


def test_merge_sparse_bins_middle_and_tail_labels_and_leaves_categories_alone():
    by_k = rp.merge_sparse_bins(_metrics()["tasks"]["position"]["by_k"], min_n=10)
    assert list(by_k)[0] == "1" and "10–11" in by_k and all(b["n"] >= 10 for b in by_k.values())
    assert sum(b["n"] for b in by_k.values()) == 150
    true_count = rp.merge_sparse_bins(_metrics()["tasks"]["count"]["by_true_value"])
    assert list(true_count) == ["0", "1", "2", "3+"] and true_count["3+"]["n"] == 37
    strata = rp.merge_sparse_bins(_bins({"last": (1, 3), "first": (2, 4), "middle": (0, 2)}))
    assert list(strata) == ["first", "middle", "last"] and strata["first"]["n"] == 4
    with_none = rp.merge_sparse_bins(_bins({"1": (1, 30), "2": (1, 3), "none": (0, 2)}))
    assert list(with_none) == ["1–2", "none"] and with_none["1–2"]["n"] == 33


def test_merge_sparse_bins_keeps_fractional_scores_of_several_replies():
    merged = rp.merge_sparse_bins({"4": _bin(3, 30), "5": {"n": 4, "k": 1.5, "rate": 0.375},
                                   "6": {"n": 20, "k": 10.0, "rate": 0.5}})
    assert list(merged) == ["4", "5+"] and merged["5+"]["k"] == pytest.approx(11.5)
    assert merged["5+"]["rate"] == pytest.approx(11.5 / 24)


def test_breakdown_plot_is_categorical_sorted_and_shows_n():
    base, adapter = _metrics(), _metrics(shift=3)
    fig = rp.plot_breakdown(base, adapter, "position", "by_word_length", "word length", "by word length")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == "≤6\nn=19" and labels[-1] == "13+\nn=11"
    assert [lab.split("\n")[0] for lab in labels] == ["≤6", "7", "8", "9", "10", "11", "12", "13+"]
    assert len(ax.containers) == 2  # base and adapter, side by side
    for c in ax.containers:
        assert c.lines[0].get_linestyle() == "None"  # no line drawn between categories
    xs = [c.lines[0].get_xdata() for c in ax.containers]
    assert all(a < b for a, b in zip(xs[0], xs[1]))  # offset, not on top of each other
    assert "strict accuracy" in ax.get_ylabel() and "95%" in ax.get_ylabel()
    rp.pyplot().close(fig)


def test_confusion_pools_wild_answers():
    truths, cols, cap = rp._confusion_axes([_metrics()["tasks"]["count"]["confusion"]])
    assert truths == ["0", "1", "2", "3", "4"]
    assert cols == ["0", "1", "2", "3", "4", "5", "6", "7", "8+", "none"] and cap == 7


# ------------------------------------------------------------------------------ the run report page
@pytest.fixture(scope="module")
def run_report(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    log = [{"step": s, "loss": 3.0 / s, "epoch": s / 10} for s in range(1, 21)] + [{"step": 20, "eval_loss": 0.4}]
    info = {"steps": 20, "backend": "peft", "device": "cpu", "precision": "fp32", "final_loss": 0.15012345,
            "batching": {"padding_fraction": 0.015}}
    rp.write_report(run, "spelling-exp: test (tiny, LoRA r=4)", _comparison(), _metrics(), _metrics(shift=3), log,
                    "model:\n  name: tiny\nlora:\n  r: 4\n", info, dpi=40)
    return run / "report"


def test_report_html_is_the_markdown_rendered(run_report):
    page = (run_report / "report.html").read_text()
    md = (run_report / "report.md").read_text()
    assert "<table>" in page and ("<th>" in page or "<th " in page)
    assert "| ---" not in page and "|---" not in page and "<pre># " not in page
    tables = _parse(page).tables
    assert tables and all(len(set(map(len, t))) == 1 for t in tables)  # every row as wide as the header
    assert all(t[0] and set(t[0]) == {"th"} for t in tables)
    # answer first: title, Answer with its table and verdicts, then plots, then config
    order = [page.index(s) for s in ("<h1>spelling-exp: test", "<h2>Answer</h2>", "<table>",
                                     "no significant difference", "<h2>Plots</h2>", "<h2>Config</h2>")]
    assert order == sorted(order)
    assert md.startswith("# spelling-exp: test (tiny, LoRA r=4)\n\n## Answer")
    assert '<code class="language-yaml">model:' in page


def test_report_html_is_self_contained_with_every_plot_inlined(run_report):
    page = (run_report / "report.html").read_text()
    md = (run_report / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\((plots/[^)]+\.png)\)", md)
    assert len(linked) >= 10 and all((run_report / p).is_file() for p in linked)
    srcs = _parse(page).imgs
    assert len(srcs) == len(linked) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert page.count("src='data:image/png;base64,") == len(linked)
    assert 'src="plots/' not in page and "src='plots/" not in page
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)  # nothing fetched from elsewhere
    assert "<style>" in page and "position:sticky" in page


def test_report_tolerates_missing_breakdowns_and_training(tmp_path):
    base = {"tasks": {"position": {"accuracy": _bin(3, 10), "right_only_in_spelling": _bin(3, 10),
                                   "no_answer": _bin(1, 10), "spelled_out": _bin(0, 10)}}}
    c = _comparison()
    del c["tasks"]["count"]
    c["primary"] = ["position"]
    out = rp.write_report(tmp_path, "t", c, base, base, [], "", None, dpi=30)
    assert {p.name for p in (out / "plots").iterdir()} == {"accuracy_by_task.png", "format_drift.png"}
    assert "<table>" in (out / "report.html").read_text()


# ------------------------------------------------------------------------------ the sweep page
def _fake_job(sweep: Path, num: int, overrides: list[str], adapter_acc: float, base_acc: float = 0.2) -> None:
    j = sweep / str(num)
    (j / ".hydra").mkdir(parents=True)
    (j / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (j / "job_result.json").write_text(json.dumps({"status": "complete"}))
    tasks = {}
    for t in TASKS:
        s = _paired(base_acc, adapter_acc, 100)
        tasks[t] = {"strict": s, "format": _format(100), "no_answer": {"base": 0.1, "adapter": 0.1}}
    for side, acc in (("eval_base", base_acc), ("eval_adapter", adapter_acc)):
        (j / side).mkdir()
        (j / side / "metrics.json").write_text(json.dumps(
            {"tasks": {t: {"accuracy": _bin(round(100 * acc), 100), "baselines": {}} for t in TASKS}}))
    (j / "compare").mkdir()
    (j / "compare" / "comparison.json").write_text(json.dumps(
        {"base_dir": "../eval_base", "adapter_dir": "../eval_adapter", "tasks": tasks}))


def test_sweep_page_renders_real_tables_with_matching_columns(tmp_path):
    sweep = tmp_path / "rank"
    for n, r in enumerate((16, 4, 8)):
        _fake_job(sweep, n, ["+experiment=smoke", f"lora.r={r}", "logger=wandb"], 0.2 + 0.02 * n)
    failed = sweep / "3"
    (failed / ".hydra").mkdir(parents=True)
    (failed / ".hydra" / "overrides.yaml").write_text("- lora.r=2\n")
    (failed / "job_result.json").write_text(json.dumps({"status": "failed", "error": "OOM <cuda> | *boom*",
                                                         "log": "3/smoke.log"}))
    sr.write_sweep_report(sweep)
    md = (sweep / "comparison.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert table[0].startswith("| job | lora.r | position: base | position: adapter | position: diff [95% CI] | "
                               "position: p | position: forced-choice diff | count: base |")
    assert len({_md_cells(line) for line in table}) == 1  # header, separator and rows agree
    page = (sweep / "comparison.html").read_text()
    assert "<table>" in page and "<pre># " not in page and "| ---" not in page and "|---" not in page
    assert "<h1>Sweep comparison" in page
    parsed = _parse(page)
    (t,) = parsed.tables
    assert len(t) == 4 and set(t[0]) == {"th"} and all(len(row) == len(t[0]) == 12 for row in t)
    assert parsed.imgs and all(s.startswith("data:image/png;base64,") for s in parsed.imgs)
    assert (sweep / "comparison_0.png").is_file()
    assert "## Failed jobs" in md and "<code>OOM &lt;cuda&gt; | *boom*</code>" in page


def test_table_columns_aligned_numbers_right_words_left():
    page = rp.render_markdown_page("| task | n | diff | note |\n|---|---|---|---|\n"
                                   "| position | 150 | +4.0 [-3.3, +11.3] | 25.0% (constant 1) |\n"
                                   "| count | | 17.3% → 25.3% | x |\n", "t", Path("."))
    cells = re.findall(r"<t[hd] class='(\w+)'>", page)
    assert cells == ["txt", "num", "num", "txt"] * 3


def test_report_folds_the_long_config(run_report):
    page = (run_report / "report.html").read_text()
    assert page.index("<h2>Config</h2>") < page.index("<details><summary>") < page.index("model:")


def test_sweep_values_sorted_numerically_and_seed_groups_in_order(tmp_path):
    assert sorted(["16", "4", "8", "abc", "1e-4"], key=sr.param_sort_key) == ["1e-4", "4", "8", "16", "abc"]
    sweep = tmp_path / "seeds"
    n = 0
    for r in (16, 4, 8):
        for s in (0, 1):
            _fake_job(sweep, n, [f"lora.r={r}", f"train.seed={s}"], 0.3 + 0.01 * s)
            n += 1
    sr.write_sweep_report(sweep)
    md = (sweep / "comparison.md").read_text()
    agg = md[md.index("## Aggregated"):]
    assert agg.index("| 4 | 2 |") < agg.index("| 8 | 2 |") < agg.index("| 16 | 2 |")
    lines = [line for line in agg.splitlines() if line.startswith("|")]
    assert len({_md_cells(line) for line in lines}) == 1
    page = (sweep / "comparison.html").read_text()
    assert all(len(set(map(len, t))) == 1 for t in _parse(page).tables) and len(_parse(page).tables) == 2


@pytest.mark.parametrize("values, joined", [(("4", "16", "8"), True), (("adamw", "sgd", "lion"), False)])
def test_sweep_plot_sorts_and_joins_only_numeric_values(monkeypatch, values, joined):
    figs = []
    monkeypatch.setattr(sr, "fig_png", lambda fig, dpi=110: figs.append(fig) or b"")
    rows = [{"job": str(i), "params": {"p": sr._value(v)},
             "tasks": {t: {"base": 0.2, "adapter": 0.3, "diff": 0.1, "ci95": [0.0, 0.2], "p": 0.5,
                           "adapter_ci95": [0.2, 0.4], "base_ci95": [0.1, 0.3]} for t in TASKS}}
            for i, v in enumerate(values)]
    (title, _), = sr.plots(rows, ["p"], [])
    assert title == "Accuracy vs p"
    (fig,) = figs
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == sorted(values, key=sr.param_sort_key)
    styles = {c.lines[0].get_linestyle() for a in fig.axes for c in a.containers}
    assert styles == ({"-", ":"} if joined else {"None"})
    assert "95%" in ax.get_ylabel() and "accuracy" in ax.get_title()
    sr.pyplot().close(fig)
