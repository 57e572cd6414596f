"""The records that travel between stages, typed (they are JSON lines on disk).

A question is what questions.jsonl holds; a prediction is one reply's row in predictions.jsonl.
Fields a task does not use are absent (``total=False``), never None-filled, so the files of
earlier versions read the same.
"""
from __future__ import annotations

from typing import Required, TypedDict


class Question(TypedDict, total=False):
    id: Required[str]
    word: Required[str]
    task: Required[str]
    stratum: Required[str]
    phrasing: Required[str]  # "<phrasing key>/<index>", "file" or "charbench"
    prompt: Required[str]  # the user turn; model/chat.py renders it
    answer: Required[str]  # always a string: a letter, or an integer written out
    word_length: int
    word_tokens: int | None  # tokens of the bare word under the model's tokenizer
    contamination: str  # data/contamination.py: clean / substring / inflection
    k: int  # position (1-based) the question asks about, or the index found (occurrence)
    asked_as_last: bool  # a last-letter question worded as "the last letter"
    letter: str  # the letter counted / looked for
    index_base: int  # occurrence questions: 0- or 1-based answers
    training_word: bool  # external questions: the word is a training word


class Reading(TypedDict):
    """How a reply was read (tasks/parsing.py) and scored against the question's answer."""
    parsed: str | None
    lenient: str | None
    spelled: bool
    ambiguous: bool
    correct: bool
    lenient_correct: bool


class Prediction(Reading):
    id: str
    sample: int
    batch: int
    reply: str
    truncated: bool
    prompt_rendered: str


class Rate(TypedDict):
    """A share over questions: n questions, k the summed question scores, and its 95% interval."""
    n: int
    k: float
    rate: float
    ci95: list[float]
