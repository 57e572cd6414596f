"""Forced-choice scoring: a score that needs no parser and is blind to answer format.

For each question, every candidate answer (a-z for position, 0..12 for count: the task's
``choices``) is scored as the *whole reply*: log P(candidate, then end of turn | rendered prompt),
with no answer prefix beyond the chat template's own assistant header (the prompt already asks for
the bare answer). A letter's upper- and lower-case forms are one candidate (their probabilities
add). The model's choice is the most probable candidate; a question is right when that is the
answer. Beside accuracy: the probability of the right answer among the candidates, the mean
confidence (probability of the choice) and the expected calibration error (10 bins).

Backends that can score a prompt's continuations (``choice_logprobs``: hf, in one batched forward
pass per question on the prompt's cached keys and values) do it; the others say so in one line and
the evaluation has generation scores only. Written to ``forced_choice.jsonl`` (one row per
question) in the evaluation dir, summarised under ``forced_choice`` in metrics.json.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from spelling_exp import tasks
from spelling_exp.analysis.stats import wilson_ci

log = logging.getLogger(__name__)
FILE = "forced_choice.jsonl"
ECE_BINS = 10


def supported(backend: Any) -> bool:
    return callable(getattr(backend, "choice_logprobs", None))


def score_questions(backend: Any, prompts: Sequence[str], questions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per question (in question order): the choice, whether it is right, and the
    candidates' probabilities (normalised over the candidates). Questions with the same candidates
    are scored together, in batches."""
    from tqdm.auto import tqdm

    groups: dict[tuple[tuple[str, tuple[str, ...]], ...], list[int]] = {}
    for i, q in enumerate(questions):
        choices = tasks.get(q["task"]).choices(q)
        if choices:
            groups.setdefault(tuple((v, tuple(fs)) for v, fs in choices.items()), []).append(i)
    rows: dict[int, dict[str, Any]] = {}
    step = 8
    with tqdm(total=sum(map(len, groups.values())), desc="forced choice", unit="q", dynamic_ncols=True) as bar:
        for choices_key, idx in groups.items():
            choices = {v: list(fs) for v, fs in choices_key}
            forms = [f for fs in choices.values() for f in fs]
            for start in range(0, len(idx), step):
                part = idx[start:start + step]
                for i, lps in zip(part, backend.choice_logprobs([prompts[i] for i in part], forms)):
                    rows[i] = _row(questions[i], choices, dict(zip(forms, lps)))
                bar.update(len(part))
    return [rows[i] for i in sorted(rows)]


def _row(q: dict[str, Any], choices: dict[str, list[str]], lp: dict[str, float]) -> dict[str, Any]:
    value_lp = {v: _logsumexp([lp[f] for f in fs]) for v, fs in choices.items()}
    total = _logsumexp(list(value_lp.values()))
    probs = {v: math.exp(x - total) for v, x in value_lp.items()}
    choice = max(probs, key=probs.__getitem__)  # ties: the first candidate, never the answer
    return {"id": q["id"], "choice": choice, "correct": choice == q["answer"], "p_right": probs.get(q["answer"], 0.0),
            "confidence": probs[choice], "logp_total": total, "probs": {v: round(p, 6) for v, p in probs.items()}}


def _logsumexp(xs: list[float]) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def summarize(rows: list[dict[str, Any]], predictions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Accuracy (Wilson CI), mean probability of the right answer, confidence, calibration error,
    and, where a reply was a bare candidate (just "f" or "3"), how often the choice agrees with it."""
    n = len(rows)
    k = sum(r["correct"] for r in rows)
    lo, hi = wilson_ci(k, n) if n else (float("nan"), float("nan"))
    bins: list[list[dict[str, Any]]] = [[] for _ in range(ECE_BINS)]
    for r in rows:
        bins[min(ECE_BINS - 1, int(r["confidence"] * ECE_BINS))].append(r)
    ece = sum(len(b) / n * abs(sum(r["correct"] for r in b) / len(b) - sum(r["confidence"] for r in b) / len(b))
              for b in bins if b) if n else float("nan")
    out: dict[str, Any] = {
        "accuracy": {"n": n, "k": k, "rate": k / n if n else float("nan"), "ci95": [lo, hi]},
        "p_right": sum(r["p_right"] for r in rows) / n if n else float("nan"),
        "confidence": sum(r["confidence"] for r in rows) / n if n else float("nan"),
        "ece": ece,
    }
    if predictions is not None:
        choice = {r["id"]: r["choice"] for r in rows}
        bare = [(choice[p["id"]], p["parsed"]) for p in predictions
                if p["id"] in choice and p["parsed"] is not None and p["reply"].strip().strip(".").lower()
                == str(p["parsed"]).lower()]
        out["agrees_with_bare_replies"] = {"n": len(bare), "rate": (sum(a == b for a, b in bare) / len(bare)
                                                                   if bare else float("nan"))}
    return out


def metrics(questions: list[dict[str, Any]], rows: list[dict[str, Any]],
            predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """``forced_choice`` for metrics.json: per task and over all questions."""
    task_of = {q["id"]: q["task"] for q in questions}
    names = tasks.ordered({task_of[r["id"]] for r in rows})
    return {"tasks": {t: summarize([r for r in rows if task_of[r["id"]] == t],
                                   [p for p in predictions if task_of.get(p["id"]) == t]) for t in names},
            "overall": summarize(rows, predictions),
            "method": "log P(candidate + end of turn | prompt), candidates normalised, argmax; no parser"}
