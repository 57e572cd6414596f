"""Metrics from scored predictions, with the *question* as the unit.

Each question gets ``n_samples`` replies; its score is the share of its replies that are right
(0 or 1 with one sample). Every rate below is a mean of per-question scores over questions, and
every interval is over questions: a Wilson interval when each question has one reply, a
percentile bootstrap over questions when it has several (samples of one question are not
independent: counting them as n replies would make intervals too narrow). The `overall` scope
resamples words, since one word can be asked about in both tasks.

Headline: strict accuracy per task. Beside it, always: the no-answer, ambiguous, spelled-out and
truncated shares, ``right_only_in_spelling`` (a format diagnostic, never accuracy: the share of
questions whose right answer appears only inside a spelled-out word, so the strict parser does not
credit it), and the trivial baselines (each task's ``baselines``, spelling_exp/tasks/). Breakdowns
by word length, position stratum and k, true count, and tokens per word are exploratory; so are
the count MAE and confusion and the position errors (the offset of the predicted letter's nearest
occurrence). ``by_contamination`` splits accuracy by how close the word is to a trained word
(clean / substring / inflection, ``unknown`` for data built before the labels), and
``clean_accuracy`` is the strict accuracy over the questions whose word is clean, to show beside
the whole.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from statistics import fmean
from typing import Any

from spelling_exp import tasks
from spelling_exp.analysis.report import natural_key
from spelling_exp.analysis.stats import mean_ci, wilson_ci
from spelling_exp.tasks.base import baseline_accuracy

Row = dict[str, Any]


def per_question(rows: Iterable[Row], value: Callable[[Row], float]) -> dict[str, float]:
    """Mean of ``value`` over each question's replies, by question id."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        groups[r["id"]].append(float(value(r)))
    return {i: fmean(v) for i, v in groups.items()}


def question_rate(rows: list[Row], value: Callable[[Row], float], cluster: Callable[[Row], str] | None = None,
                  seed: int = 0) -> dict[str, Any]:
    """{"n": questions, "k": sum of question scores, "rate", "ci95"} over the questions in ``rows``."""
    scores = per_question(rows, value)
    n = len(scores)
    k = sum(scores.values())
    if n == 0:
        return {"n": 0, "k": 0, "rate": 0.0, "ci95": [0.0, 1.0]}
    binary = all(s in (0.0, 1.0) for s in scores.values())
    if binary and cluster is None:
        lo, hi = wilson_ci(round(k), n)
    else:
        ids = sorted(scores)
        labels = None
        if cluster is not None:
            first = {}
            for r in rows:
                first.setdefault(r["id"], cluster(r))
            labels = [first[i] for i in ids]
        _, lo, hi = mean_ci([scores[i] for i in ids], clusters=labels, n_boot=2000, seed=seed)
    return {"n": n, "k": k, "rate": k / n, "ci95": [lo, hi]}


def _breakdown(rows: Iterable[Row], key: Callable[[Row], Any]) -> dict[str, Any]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[str(key(r))].append(r)
    ordered = sorted(groups.items(), key=lambda kv: natural_key(kv[0]))
    return {g: question_rate(v, lambda r: r["correct"]) for g, v in ordered}


def joined_rows(questions: list[Row], predictions: list[Row]) -> list[Row]:
    by_id = {q["id"]: q for q in questions}
    return [{**by_id[p["id"]], **p} for p in sorted(predictions, key=lambda p: (p["id"], p["sample"]))]


def _contamination(row: Row) -> str:
    """The question's word's contamination label; ``unknown`` for data built before the labels."""
    return row.get("contamination") or "unknown"


def task_metrics(rows: list[Row], task: str, questions: list[Row]) -> dict[str, Any]:
    spec = tasks.get(task)
    m: dict[str, Any] = {
        "replies": len(rows),
        "questions": len({r["id"] for r in rows}),
        "accuracy": question_rate(rows, lambda r: r["correct"]),
        "no_answer": question_rate(rows, lambda r: r["parsed"] is None),
        "ambiguous": question_rate(rows, lambda r: r.get("ambiguous", False)),
        "spelled_out": question_rate(rows, lambda r: r["spelled"]),
        "truncated": question_rate(rows, lambda r: r.get("truncated", False)),
        "right_only_in_spelling": question_rate(rows, lambda r: r["lenient_correct"] and not r["correct"]),
        "baselines": baseline_accuracy(spec, questions),
        "by_word_length": _breakdown(rows, lambda r: r["word_length"]),
        "by_word_tokens": _breakdown(rows, lambda r: r["word_tokens"]),
        "by_stratum": _breakdown(rows, lambda r: r["stratum"]),
        # Hold-out words near a trained word (data/contamination.py); "unknown" for older data.
        "by_contamination": _breakdown(rows, _contamination),
        "clean_accuracy": question_rate([r for r in rows if _contamination(r) == "clean"], lambda r: r["correct"]),
    }
    lengths: dict[str, list[int]] = defaultdict(list)
    for q in questions:
        lengths[q["stratum"]].append(q["word_length"])
    m["word_length_by_stratum"] = {s: {"n": len(v), "mean": fmean(v), "min": min(v), "max": max(v)}
                                   for s, v in sorted(lengths.items(), key=lambda kv: natural_key(kv[0]))}
    m.update(spec.extra_metrics(rows, _breakdown))
    if spec.numeric:  # integer answers: how far off, and what was answered for each true value
        answered = [r for r in rows if r["parsed"] is not None]
        m["mae"] = (sum(abs(int(r["parsed"]) - int(r["answer"])) for r in answered) / len(answered)
                    if answered else None)
        m["by_true_value"] = _breakdown(rows, lambda r: r["answer"])
        confusion: dict[str, Counter] = defaultdict(Counter)
        for r in rows:
            confusion[r["answer"]][r["parsed"] if r["parsed"] is not None else "none"] += 1
        m["confusion"] = {t: dict(sorted(c.items())) for t, c in sorted(confusion.items(), key=lambda kv: int(kv[0]))}
    return m


def compute_metrics(questions: list[Row], predictions: list[Row]) -> dict[str, Any]:
    rows = joined_rows(questions, predictions)
    names = tasks.ordered(r["task"] for r in rows)
    out: dict[str, Any] = {"tasks": {t: task_metrics([r for r in rows if r["task"] == t], t,
                                                     [q for q in questions if q["task"] == t]) for t in names}}
    word = lambda r: r["word"]  # noqa: E731 - one word can be asked about in both tasks: resample words
    out["overall"] = {
        "accuracy": question_rate(rows, lambda r: r["correct"], cluster=word),
        "no_answer": question_rate(rows, lambda r: r["parsed"] is None, cluster=word),
        "right_only_in_spelling": question_rate(rows, lambda r: r["lenient_correct"] and not r["correct"],
                                                cluster=word),
    }
    return out


def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['rate']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"


def metrics_table(metrics: dict[str, Any], title: str = "") -> str:
    lines = [f"### {title}" if title else "",
             "| task | questions | replies | accuracy (strict) [95% CI] | best trivial baseline | no answer | "
             "ambiguous | spells word out | truncated | right only inside a spelling (format diagnostic) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task, m in metrics["tasks"].items():
        b = m.get("baselines", {})
        best = f"{100 * b['rules'][b['best']]['rate']:.1f}% ({b['best']})" if b.get("best") else ""
        lines.append(f"| {task} | {m['questions']} | {m['replies']} | {_pct(m['accuracy'])} | {best} | "
                     f"{100 * m['no_answer']['rate']:.1f}% | {100 * m['ambiguous']['rate']:.1f}% | "
                     f"{100 * m['spelled_out']['rate']:.1f}% | {100 * m['truncated']['rate']:.1f}% | "
                     f"{100 * m['right_only_in_spelling']['rate']:.1f}% |")
    o = metrics["overall"]
    lines.append(f"| **all** | {o['accuracy']['n']} | | {_pct(o['accuracy'])} | | {100 * o['no_answer']['rate']:.1f}% "
                 f"| | | | {100 * o['right_only_in_spelling']['rate']:.1f}% |")
    return "\n".join(lines).strip() + "\n"
