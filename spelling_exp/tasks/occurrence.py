"""Occurrence questions: the index of a letter's first or last occurrence (exploratory).

Only from an external question set (eval.questions_file, e.g. CharBench's find_first_occurrence
/ find_last_occurrence): never generated. The answer is an index, 0- or 1-based as the file's
prompt counts (``index_base``), so a spelled-out word gives no lenient reading.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from spelling_exp.tasks.base import WORD_LENGTH, Breakdown, Task
from spelling_exp.tasks.parsing import Parsed, parse_number
from spelling_exp.tasks.records import Question
from spelling_exp.tasks.rows import RowContext, read_int, read_letter, read_text, wrong_answer

STRATA = ("first", "last")


class Occurrence(Task):
    name = "occurrence"
    generated = False
    breakdowns = (Breakdown("by_k", "occurrence_by_k", "position of the occurrence (1 = first letter)",
                            "by position of the occurrence"),
                  Breakdown(WORD_LENGTH[0], "occurrence_by_length", *WORD_LENGTH[1:]))
    charbench = {"find_first_occurrence": "first", "find_last_occurrence": "last"}

    def score(self, q: Question, reply: str) -> Parsed:
        p = parse_number(reply, q["word"], q["letter"])
        return replace(p, lenient=p.value)

    def extra_metrics(self, rows: list[dict[str, Any]], breakdown: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        return {"by_k": breakdown(rows, lambda r: r["k"])}

    def question(self, row: dict[str, Any], word: str, at: RowContext, stratum: str, index_base: int, prompt: str,
                 letter: str) -> dict[str, Any]:
        answer = read_int(row["answer"], "answer", at)
        if letter not in word:
            raise at.error(f"answer {row['answer']!r} is wrong: {letter!r} does not occur in {word!r}")
        index = word.index(letter) if stratum == "first" else word.rindex(letter)
        if answer != index + index_base:
            raise wrong_answer(at, row["answer"], index + index_base,
                               f"the {index_base}-based index of the {stratum} {letter!r} in {word!r}")
        return {"task": self.name, "stratum": stratum, "letter": letter, "k": index + 1, "index_base": index_base,
                "phrasing": "file", "prompt": prompt, "answer": str(answer)}

    def from_jsonl(self, row: dict[str, Any], word: str, at: RowContext, cfg: Any) -> dict[str, Any]:
        stratum = read_text(row, "stratum", at)
        if stratum not in STRATA:
            raise at.error(f"field 'stratum'={stratum!r} of an occurrence question must be first or last")
        if row.get("index_base") is None:
            raise at.error("missing field 'index_base' (0 or 1: how the prompt counts positions)")
        index_base = read_int(row["index_base"], "index_base", at)
        if index_base not in (0, 1):
            raise at.error(f"field 'index_base'={index_base} must be 0 or 1")
        return self.question(row, word, at, stratum, index_base, read_text(row, "prompt", at),
                             read_letter(row, "letter", at))

    def from_charbench(self, row: dict[str, Any], word: str, at: RowContext, cfg: Any,
                       stratum: str | None) -> dict[str, Any] | None:
        letter = read_letter(row, "character", at)
        if letter not in word and read_int(row["answer"], "answer", at) == -1:
            return None  # CharBench's "absent" rows: skipped and counted
        return {**self.question(row, word, at, str(stratum), 0, read_text(row, "question", at), letter),
                "phrasing": "charbench"}
