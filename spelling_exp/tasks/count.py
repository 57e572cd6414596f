"""Count questions: "how many r's in 'strawberry'?" (a co-primary task).

The asked letter must not leak the answer. Drawing it from the word's own letters (count >= 1)
or from the letters *not* in it (count 0) would make rare letters (j, q, x, z, ...) mark the zero
stratum, and "rare letter -> 0, else 1" would beat any constant answer. So the letter is drawn
first, from one distribution shared by every true-count stratum (shaped by the scarcest stratum,
3+, so mostly common letters; see ``letter_plan``), each stratum asks about each letter in the
same proportion (+-1 question), and only then is a word with that letter count picked. The
letter then says nothing about the true count; word length still does (a word with three e's is
long), so metrics report word length per true count.
"""
from __future__ import annotations

import string
from collections import Counter
from typing import Any

from spelling_exp.data.examples import seeded_rng
from spelling_exp.data.templates import Cell, allocate
from spelling_exp.errors import SizeError
from spelling_exp.tasks.base import (
    WORD_LENGTH,
    WORD_TOKENS,
    Breakdown,
    Rule,
    Task,
    check_strata,
    pick_phrasing,
    strata_sequence,
    word_fields,
)
from spelling_exp.tasks.parsing import Parsed, parse_number
from spelling_exp.tasks.records import Question
from spelling_exp.tasks.rows import RowContext, phrase_external, read_int, read_letter, read_text, wrong_answer

STRATA = ("0", "1", "2", "3+")
# Rarely in a word: if the asked letter leaked the answer, "rare -> 0, else 1" would beat every constant.
RARE_LETTERS = frozenset("jqxzvkwy")


def count_stratum(n: int) -> str:
    return "3+" if n >= 3 else str(n)


def letter_plan(rows: list[dict[str, Any]], strata: list[str], seed: int) -> dict[str, list[str]]:
    """Per stratum, the letters its questions ask about, in a seeded order.

    One letter distribution P for every stratum: P(c) proportional to min over strata of
    (distinct words that can serve stratum s with letter c) / (questions in s). Then stratum s
    asks n_s * P(c) questions about c (largest remainder), never more than it has words for, so
    no (word, letter) question repeats. The scarcest stratum (3+) shapes P: mostly common letters.
    """
    need = Counter(strata)
    supply = {(s, c): 0 for s in need for c in string.ascii_lowercase}
    for row in rows:
        for c in string.ascii_lowercase:
            s = count_stratum(row["word"].count(c))
            if s in need:
                supply[s, c] += 1
    weight = {c: min(supply[s, c] / need[s] for s in need) for c in string.ascii_lowercase}
    if sum(weight.values()) < 1:
        scarce = min(need, key=lambda s: sum(supply[s, c] for c in string.ascii_lowercase) / need[s])
        raise SizeError(f"eval: the hold-out words cannot serve count stratum '{scarce}' ({need[scarce]} questions) "
                        "with the letter distribution shared by all strata; lower eval.n_questions, use more "
                        "hold-out words, or change eval.count_strata")
    letters = [c for c in string.ascii_lowercase if weight[c] > 0]
    total = sum(weight[c] for c in letters)
    cells = [Cell(c, "", "", weight[c] / total) for c in letters]
    plan = {}
    for s in sorted(need):
        seq = [c.category for c, k in zip(cells, allocate(cells, need[s])) for _ in range(k)]
        seeded_rng(seed, f"count-letters:{s}").shuffle(seq)
        plan[s] = seq
    return plan


class Count(Task):
    name = "count"
    confusion_plot = True
    phrasings = {"count": frozenset({"word", "letter"})}
    breakdowns = (
        Breakdown(WORD_LENGTH[0], "count_by_length", *WORD_LENGTH[1:]),
        Breakdown("by_true_value", "count_by_true_count", "true count of the letter in the word", "by true count"),
        Breakdown(WORD_TOKENS[0], "count_by_tokens", *WORD_TOKENS[1:]),
    )
    charbench = {"count_character_frequency": None}

    def check(self, cfg: Any) -> None:
        super().check(cfg)
        check_strata("count_strata", cfg.count_strata, STRATA)

    def build(self, rows: list[dict[str, Any]], cfg: Any) -> list[Question]:
        rng = seeded_rng(cfg.seed, f"questions:{self.name}")
        strata = strata_sequence(cfg.count_strata, STRATA, cfg.n_questions, rng)
        plan = {s: iter(seq) for s, seq in letter_plan(rows, strata, cfg.seed).items()}
        pools: dict[tuple[str, str], list[dict[str, Any]]] = {}
        out: list[Question] = []
        for s in strata:
            letter = next(plan[s])
            if (s, letter) not in pools:  # the words with this letter count, in a seeded order; each used once
                pool = [r for r in rows if count_stratum(r["word"].count(letter)) == s]
                seeded_rng(cfg.seed, f"count-words:{s}:{letter}").shuffle(pool)
                pools[s, letter] = pool
            row = pools[s, letter].pop()
            word = row["word"]
            prompt, phrasing = pick_phrasing(cfg, "count", rng, word=word, letter=letter)
            out.append({"word": word, "task": self.name, "stratum": s, "letter": letter, "phrasing": phrasing,
                        "prompt": prompt, "answer": str(word.count(letter)), **word_fields(row)})  # type: ignore[typeddict-item]
        return out

    def score(self, q: Question, reply: str) -> Parsed:
        return parse_number(reply, q["word"], q["letter"])

    def baselines(self, questions: list[Question]) -> dict[str, Rule]:
        rules: dict[str, Rule] = {f"constant {c}": (lambda q, c=c: str(c)) for c in range(4)}
        rules["rare letter -> 0, else 1"] = lambda q: "0" if q["letter"] in RARE_LETTERS else "1"
        return rules

    def _question(self, row: dict[str, Any], word: str, at: RowContext, cfg: Any, prompt_field: str,
                  letter_field: str) -> dict[str, Any]:
        letter = read_letter(row, letter_field, at)
        answer = read_int(row["answer"], "answer", at)
        if answer != word.count(letter):
            raise wrong_answer(at, row["answer"], word.count(letter), f"the count of {letter!r} in {word!r}")
        if row.get(prompt_field) is not None:
            prompt, phrasing = read_text(row, prompt_field, at), "file"
        else:
            prompt, phrasing = phrase_external("count", str(at.qid), cfg, self.phrasings, word=word, letter=letter)
        return {"task": self.name, "stratum": str(row.get("stratum") or count_stratum(answer)), "letter": letter,
                "phrasing": phrasing, "prompt": prompt, "answer": str(answer)}

    def from_jsonl(self, row: dict[str, Any], word: str, at: RowContext, cfg: Any) -> dict[str, Any]:
        return self._question(row, word, at, cfg, "prompt", "letter")

    def from_charbench(self, row: dict[str, Any], word: str, at: RowContext, cfg: Any,
                       stratum: str | None) -> dict[str, Any] | None:
        return {**self._question(row, word, at, cfg, "question", "character"), "phrasing": "charbench"}
