"""Trivial baselines: the accuracy a guess reaches without reading the word's letters.

Every evaluation reports them beside the model, so a reader sees the floor: a model at or below
its best baseline has learned nothing a rule could not do. All are computed from the questions
alone (no model). "Best constant" picks the constant with hindsight (the most frequent true
answer), so it is an optimistic floor.

- position: the best constant letter; the word's first letter (a model that always answers
  with the initial gets every `first` question right).
- count: each constant 0, 1, 2, 3; "rare letter -> 0, else 1" (j q x z v k w y are rarely in a
  word: if the asked letter leaked the answer, this rule would beat every constant).
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

RARE_LETTERS = frozenset("jqxzvkwy")


def _rules(task: str, questions: list[dict[str, Any]]) -> dict[str, Callable[[dict[str, Any]], str]]:
    if task == "position":
        best = Counter(q["answer"] for q in questions).most_common(1)[0][0]
        return {f"constant '{best}'": lambda q: best, "first letter of the word": lambda q: q["word"][0]}
    if task == "count":
        rules: dict[str, Callable[[dict[str, Any]], str]] = {
            f"constant {c}": (lambda q, c=c: str(c)) for c in range(4)}
        rules["rare letter -> 0, else 1"] = lambda q: "0" if q["letter"] in RARE_LETTERS else "1"
        return rules
    best = Counter(q["answer"] for q in questions).most_common(1)[0][0]
    return {f"constant {best}": lambda q: best}


def baseline_accuracy(task: str, questions: list[dict[str, Any]]) -> dict[str, Any]:
    """{"rules": {name: {"n", "k", "rate"}}, "best": name, "best_constant": name} for one task's questions."""
    if not questions:
        return {"rules": {}, "best": None, "best_constant": None}
    rules = {}
    for name, rule in _rules(task, questions).items():
        k = sum(rule(q) == q["answer"] for q in questions)
        rules[name] = {"n": len(questions), "k": k, "rate": k / len(questions)}
    ranked = sorted(rules, key=lambda n: (-rules[n]["rate"], n))
    return {"rules": rules, "best": ranked[0],
            "best_constant": next(n for n in ranked if n.startswith("constant"))}
