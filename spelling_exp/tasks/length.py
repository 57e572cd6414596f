"""Length questions: "how many letters are in 'pelican'?" (optional, exploratory).

A control for "knows how long the word is": one stratum, words in a seeded order.
"""
from __future__ import annotations

from typing import Any

from spelling_exp.data.examples import seeded_rng
from spelling_exp.tasks.base import WORD_TOKENS, Breakdown, Task, pick_phrasing, walk_strata
from spelling_exp.tasks.parsing import Parsed, parse_number
from spelling_exp.tasks.records import Question


class Length(Task):
    name = "length"
    phrasings = {"length": frozenset({"word"})}
    breakdowns = (Breakdown(WORD_TOKENS[0], "length_by_tokens", *WORD_TOKENS[1:]),)

    def build(self, rows: list[dict[str, Any]], cfg: Any) -> list[Question]:
        rng = seeded_rng(cfg.seed, f"questions:{self.name}")

        def ask(row: dict[str, Any], stratum: str) -> dict[str, Any]:
            prompt, phrasing = pick_phrasing(cfg, "length", rng, word=row["word"])
            return {"task": self.name, "stratum": stratum, "phrasing": phrasing, "prompt": prompt,
                    "answer": str(len(row["word"]))}

        return walk_strata(self.name, rows, ["all"] * cfg.n_questions, cfg.seed, ask)

    def score(self, q: Question, reply: str) -> Parsed:
        return parse_number(reply, q["word"])
