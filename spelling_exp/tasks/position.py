"""Position questions: "what is the 3rd letter of 'pelican'?" (a co-primary task).

Strata first / middle / last are allocated exactly over ``eval.position_strata``; a middle
question draws k uniformly from 2..n-1. A share ``eval.last_as_word`` of last-letter questions is
worded as "the last letter" instead of by ordinal (the reply is then read as bound to "last").
"""
from __future__ import annotations

import string
from collections import Counter
from collections.abc import Callable
from typing import Any

from spelling_exp.data.examples import seeded_rng
from spelling_exp.errors import require
from spelling_exp.tasks.base import (
    WORD_LENGTH,
    WORD_TOKENS,
    Breakdown,
    Rule,
    Task,
    check_strata,
    ordinal,
    pick_phrasing,
    strata_sequence,
    walk_strata,
)
from spelling_exp.tasks.parsing import Parsed, parse_letter
from spelling_exp.tasks.records import Question
from spelling_exp.tasks.rows import RowContext, phrase_external, read_int, read_text, wrong_answer

STRATA = ("first", "middle", "last")


def position_offset(word: str, k: int, predicted: str | None) -> str:
    """Signed distance from k to the nearest occurrence of the predicted letter ('absent' if none)."""
    if predicted is None:
        return "none"
    hits = [i + 1 for i, ch in enumerate(word) if ch == predicted]
    if not hits:
        return "absent"
    off = min(hits, key=lambda i: (abs(i - k), i)) - k
    return f"{off:+d}" if off else "0"


class Position(Task):
    name = "position"
    numeric = False
    phrasings = {"position": frozenset({"word", "ordinal", "k"}), "position_last": frozenset({"word"})}
    breakdowns = (
        Breakdown(WORD_LENGTH[0], "position_by_length", *WORD_LENGTH[1:]),
        Breakdown("by_k", "position_by_k", "asked position k (1 = first letter)", "by asked position k"),
        Breakdown("by_stratum", "position_by_stratum", "asked letter", "for the first / a middle / the last letter"),
        Breakdown(WORD_TOKENS[0], "position_by_tokens", *WORD_TOKENS[1:]),
    )

    def choices(self, q: Question) -> dict[str, list[str]] | None:
        """Every letter, either case (one candidate: their probabilities add)."""
        return {c: [c, c.upper()] for c in string.ascii_lowercase}

    def check(self, cfg: Any) -> None:
        super().check(cfg)
        check_strata("position_strata", cfg.position_strata, STRATA)
        require(0 <= cfg.last_as_word <= 1, "eval.last_as_word", cfg.last_as_word, "in [0, 1]")

    def build(self, rows: list[dict[str, Any]], cfg: Any) -> list[Question]:
        rng = seeded_rng(cfg.seed, f"questions:{self.name}")
        strata = strata_sequence(cfg.position_strata, STRATA, cfg.n_questions, rng)

        def ask(row: dict[str, Any], stratum: str) -> dict[str, Any] | None:
            word = row["word"]
            n = len(word)
            if stratum == "middle" and n < 3:
                return None
            k = 1 if stratum == "first" else n if stratum == "last" else rng.randint(2, n - 1)
            as_last = stratum == "last" and rng.random() < cfg.last_as_word
            prompt, phrasing = pick_phrasing(cfg, "position_last" if as_last else "position", rng,
                                             word=word, ordinal=ordinal(k), k=k)
            return {"task": self.name, "stratum": stratum, "k": k, "asked_as_last": as_last,
                    "phrasing": phrasing, "prompt": prompt, "answer": word[k - 1]}

        return walk_strata(self.name, rows, strata, cfg.seed, ask)

    def score(self, q: Question, reply: str) -> Parsed:
        return parse_letter(reply, q["word"], q["k"], q.get("asked_as_last", False))

    def baselines(self, questions: list[Question]) -> dict[str, Rule]:
        best = Counter(q["answer"] for q in questions).most_common(1)[0][0]
        return {f"constant '{best}'": lambda q: best, "first letter of the word": lambda q: q["word"][0]}

    def extra_metrics(self, rows: list[dict[str, Any]], breakdown: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        return {"by_k": breakdown(rows, lambda r: r["k"]),
                "error_offsets": dict(sorted(Counter(
                    position_offset(r["word"], r["k"], r["parsed"]) for r in rows if not r["correct"]).items()))}

    def from_jsonl(self, row: dict[str, Any], word: str, at: RowContext, cfg: Any) -> dict[str, Any]:
        if "k" not in row or row["k"] is None:
            raise at.error("missing field 'k'")
        k = read_int(row["k"], "k", at)
        if not 1 <= k <= len(word):
            raise at.error(f"field 'k'={k} is outside the word {word!r} (1..{len(word)})")
        answer = row["answer"]
        if not isinstance(answer, str) or len(answer) != 1:
            raise at.error(f"field 'answer' must be one letter for a position question, got {answer!r}")
        if answer.lower() != word[k - 1].lower():
            raise wrong_answer(at, answer, word[k - 1], f"letter {k} of {word!r}")
        stratum = row.get("stratum") or ("first" if k == 1 else "last" if k == len(word) else "middle")
        as_last = row.get("asked_as_last", False)
        if not isinstance(as_last, bool):
            raise at.error(f"field 'asked_as_last' must be true or false, got {as_last!r}")
        if row.get("prompt") is not None:
            prompt, phrasing = read_text(row, "prompt", at), "file"
        else:
            rng = seeded_rng(cfg.seed, f"external-last:{at.qid}")
            as_last = k == len(word) and rng.random() < cfg.last_as_word
            key = "position_last" if as_last else "position"
            prompt, phrasing = phrase_external(key, str(at.qid), cfg, self.phrasings,
                                               word=word, ordinal=ordinal(k), k=k)
        return {"task": self.name, "stratum": str(stratum), "k": k, "asked_as_last": as_last, "phrasing": phrasing,
                "prompt": prompt, "answer": word[k - 1].lower()}
