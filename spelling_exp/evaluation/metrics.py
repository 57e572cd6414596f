"""Metrics from scored predictions: accuracy with Wilson CIs, breakdowns, format drift.

Headline: strict accuracy per task. Beside it, always: the no-answer rate, the rate of
replies that spell the word out, and the *lenient* accuracy (a reading derived from a
spelled-out word when no explicit answer was given). Breakdowns by word length, position
stratum and k, true count, and tokens per word; count MAE and confusion; position errors as
the offset of the predicted letter's nearest occurrence.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from spelling_exp.analysis.stats import wilson_ci


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_ci(k, n)
    return {"n": n, "k": k, "rate": k / n if n else 0.0, "ci95": [lo, hi]}


def _breakdown(rows: Iterable[dict[str, Any]], key) -> dict[str, Any]:
    groups: dict[str, list[bool]] = defaultdict(list)
    for r in rows:
        groups[str(key(r))].append(r["correct"])
    def sort_key(s: str):
        return (0, int(s.rstrip("+")), s) if s.rstrip("+").isdigit() else (1, 0, s)
    return {g: _rate(sum(v), len(v)) for g, v in sorted(groups.items(), key=lambda kv: sort_key(kv[0]))}


def position_offset(word: str, k: int, predicted: str | None) -> str:
    """Signed distance from k to the nearest occurrence of the predicted letter ('absent' if none)."""
    if predicted is None:
        return "none"
    hits = [i + 1 for i, ch in enumerate(word) if ch == predicted]
    if not hits:
        return "absent"
    off = min(hits, key=lambda i: (abs(i - k), i)) - k
    return f"{off:+d}" if off else "0"


def joined_rows(questions: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {q["id"]: q for q in questions}
    return [{**by_id[p["id"]], **p} for p in sorted(predictions, key=lambda p: (p["id"], p["sample"]))]


def task_metrics(rows: list[dict[str, Any]], task: str) -> dict[str, Any]:
    n = len(rows)
    m: dict[str, Any] = {
        "replies": n,
        "questions": len({r["id"] for r in rows}),
        "accuracy": _rate(sum(r["correct"] for r in rows), n),
        "no_answer": _rate(sum(r["parsed"] is None for r in rows), n),
        "spelled_out": _rate(sum(r["spelled"] for r in rows), n),
        "lenient_accuracy": _rate(sum(r["lenient_correct"] for r in rows), n),
        "by_word_length": _breakdown(rows, lambda r: r["word_length"]),
        "by_word_tokens": _breakdown(rows, lambda r: r["word_tokens"]),
        "by_stratum": _breakdown(rows, lambda r: r["stratum"]),
    }
    if task == "position":
        m["by_k"] = _breakdown(rows, lambda r: r["k"])
        m["error_offsets"] = dict(sorted(Counter(
            position_offset(r["word"], r["k"], r["parsed"]) for r in rows if not r["correct"]).items()))
    if task in ("count", "length"):
        answered = [r for r in rows if r["parsed"] is not None]
        m["mae"] = (sum(abs(int(r["parsed"]) - int(r["answer"])) for r in answered) / len(answered)
                    if answered else None)
        m["by_true_value"] = _breakdown(rows, lambda r: r["answer"])
        confusion: dict[str, Counter] = defaultdict(Counter)
        for r in rows:
            confusion[r["answer"]][r["parsed"] if r["parsed"] is not None else "none"] += 1
        m["confusion"] = {t: dict(sorted(c.items())) for t, c in sorted(confusion.items())}
    return m


def compute_metrics(questions: list[dict[str, Any]], predictions: list[dict[str, Any]]) -> dict[str, Any]:
    rows = joined_rows(questions, predictions)
    tasks = sorted({r["task"] for r in rows}, key=lambda t: ("position", "count", "length").index(t))
    out: dict[str, Any] = {"tasks": {t: task_metrics([r for r in rows if r["task"] == t], t) for t in tasks}}
    out["overall"] = {
        "accuracy": _rate(sum(r["correct"] for r in rows), len(rows)),
        "no_answer": _rate(sum(r["parsed"] is None for r in rows), len(rows)),
        "lenient_accuracy": _rate(sum(r["lenient_correct"] for r in rows), len(rows)),
    }
    return out


def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['rate']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}]"


def metrics_table(metrics: dict[str, Any], title: str = "") -> str:
    lines = [f"### {title}" if title else "",
             "| task | n | accuracy (strict) [95% CI] | no answer | spells word out | lenient accuracy |",
             "|---|---|---|---|---|---|"]
    for task, m in metrics["tasks"].items():
        lines.append(f"| {task} | {m['replies']} | {_pct(m['accuracy'])} | {100 * m['no_answer']['rate']:.1f}% | "
                     f"{100 * m['spelled_out']['rate']:.1f}% | {_pct(m['lenient_accuracy'])} |")
    o = metrics["overall"]
    lines.append(f"| **all** | {o['accuracy']['n']} | {_pct(o['accuracy'])} | {100 * o['no_answer']['rate']:.1f}% "
                 f"| | {_pct(o['lenient_accuracy'])} |")
    return "\n".join(line for line in lines if line is not None).strip() + "\n"
