"""Dig answers out of free-text replies.

Strict reading (the headline metric): an explicit answer, e.g. a lone letter, a quoted
letter, "... is n.", "appears 3 times", "three". A letter that is part of a spelled-out
sequence ("is h o v e l") is *not* a strict answer: the reply never committed to one.

Spelled-out detection: a run of >= 3 isolated letters separated only by spaces or
punctuation ("h-o-v-e-l", "h, o, v, e, l"). A LoRA trained on spelling tends to answer by
spelling the word; we measure that rate separately and derive a clearly labelled
*lenient* reading from the spelling (the k-th letter of the run, the letter's count in it),
so a reader can tell lost knowledge from a changed answer format.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

NUMBER_WORDS = {
    "zero": 0, "no": 0, "none": 0, "one": 1, "once": 1, "single": 1, "two": 2, "twice": 2, "three": 3,
    "thrice": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
    "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20,
}
_NUMWORD = r"zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|" \
           r"sixteen|seventeen|eighteen|nineteen|twenty"
_NUM = rf"(\d+|{_NUMWORD})"
_OQ = "\"'“‘`*("  # opening quote-like characters
_CQ = "\"'”’`*)"
_THINK = re.compile(r"<think>.*?</think>", re.S)
_ISOLATED_LETTER = re.compile(r"(?<![A-Za-z0-9])[A-Za-z](?![A-Za-z0-9])")
_RUN_GAP = re.compile(r"^[\s,\-.|/>:;_+'\"`*“”‘’]*$")


@dataclass(frozen=True)
class Parsed:
    value: str | None  # strict answer; None = no parseable answer
    spelled: bool  # the reply spells a word out letter by letter
    lenient: str | None  # strict value if any, else a reading derived from the spelled-out letters

    @property
    def answered(self) -> bool:
        return self.value is not None


def clean(reply: str) -> str:
    """Drop think blocks (complete or dangling) and surrounding whitespace."""
    text = _THINK.sub(" ", reply)
    text = text.replace("<think>", " ").replace("</think>", " ")
    return text.strip()


def spelled_runs(text: str, min_len: int = 3) -> list[tuple[int, int, str]]:
    """(start, end, letters) for each run of >= min_len isolated letters joined by separators."""
    runs: list[tuple[int, int, str]] = []
    cur: list[re.Match] = []
    for m in _ISOLATED_LETTER.finditer(text):
        if cur and not _RUN_GAP.match(text[cur[-1].end():m.start()]):
            if len(cur) >= min_len:
                runs.append((cur[0].start(), cur[-1].end(), "".join(x.group() for x in cur).lower()))
            cur = []
        cur.append(m)
    if len(cur) >= min_len:
        runs.append((cur[0].start(), cur[-1].end(), "".join(x.group() for x in cur).lower()))
    return runs


def _in_run(pos: int, runs: list[tuple[int, int, str]]) -> bool:
    return any(s <= pos < e for s, e, _ in runs)


def _best_run(runs: list[tuple[int, int, str]], word: str) -> str | None:
    """The run that most resembles the word (longest common letters, then longest)."""
    if not runs:
        return None
    return max((r[2] for r in runs), key=lambda s: (s == word, len(set(s) & set(word)), len(s)))


_LETTER_PATTERNS = [
    re.compile(r"^\W*([A-Za-z])\W*$"),  # the whole reply is one letter
    re.compile(rf"(?:answer|letter)\s*(?:is|:)\s*(?:the\s+letter\s+)?[{_OQ}]*([A-Za-z])(?![A-Za-z])", re.I),
    re.compile(rf"\b(?:is|be|:)\s*:?\s*(?:the\s+letter\s+)?[{_OQ}]+([A-Za-z])[{_CQ}]+", re.I),
    re.compile(r"\b(?:is|be)\s*:?\s*(?:the\s+letter\s+)?([A-Za-z])(?=\s*(?:[.,!;)]|$))", re.I),
    re.compile(rf"\bthe\s+letter\s+[{_OQ}]*([A-Za-z])(?![A-Za-z])[{_CQ}]*(?!\s+(?:appears|occurs))", re.I),
    re.compile(rf"[{_OQ}]([A-Za-z])[{_CQ}]"),  # any quoted single letter
]


def parse_letter(reply: str, word: str, k: int, asked_as_last: bool = False) -> Parsed:
    """Answer to "what is the k-th letter of word"."""
    text = clean(reply)
    runs = spelled_runs(text)
    value = None
    for pat in _LETTER_PATTERNS:
        for m in pat.finditer(text):
            if not _in_run(m.start(1), runs):
                value = m.group(1).lower()
                break
        if value is not None:
            break
    run = _best_run(runs, word)
    lenient = value
    if lenient is None and run:
        idx = len(run) - 1 if asked_as_last else k - 1
        lenient = run[idx] if 0 <= idx < len(run) else None
    return Parsed(value, bool(runs), lenient)


def _to_int(token: str) -> int:
    return int(token) if token.isdigit() else NUMBER_WORDS[token.lower()]


def _count_patterns(letter: str | None) -> list[re.Pattern]:
    pats = [re.compile(rf"^\W*{_NUM}\W*$", re.I)]  # the whole reply is a number
    pats.append(re.compile(rf"\b{_NUM}\s+(?:times?|occurrences?)\b", re.I))
    pats.append(re.compile(r"\b(once|twice|thrice)\b", re.I))
    if letter:
        L = re.escape(letter)
        pats.append(re.compile(rf"\b{_NUM}\s+[{_OQ}]?{L}[{_CQ}]?(?:'?s)?\b", re.I))  # "3 r's"
        pats.append(re.compile(rf"\bno\s+[{_OQ}]?{L}[{_CQ}]?(?:'?s)?\b", re.I))  # "no z's" (no group: zero)
    pats.append(re.compile(
        rf"\b(?:is|are|answer(?:\s+is)?|count(?:\s+is)?|total(?:\s+of)?|equals|=|:)\s*:?\s*[{_OQ}]*{_NUM}\b", re.I))
    pats.append(re.compile(
        r"\b(?:does\s*n[o']?t|doesn't|do\s*n[o']?t|don't|never|not)\s+(?:appear|occur|contain|have|include|"
        r"show\s+up|found|present)|\bno\s+(?:occurrences?|instances?|times?)\b|\bnone\b|\bzero\b", re.I))
    pats.append(re.compile(rf"(?<![\w.]){_NUM}\b(?!\s*(?:st|nd|rd|th)\b)(?!\.\d)", re.I))  # any number
    return pats


def parse_number(reply: str, word: str, letter: str | None = None) -> Parsed:
    """Answer to "how many times does letter appear in word" (or, letter=None, "how many letters")."""
    text = clean(reply)
    runs = spelled_runs(text)
    value = None
    for pat in _count_patterns(letter):
        m = pat.search(text)
        if m:
            value = "0" if not m.groups() or m.group(1) is None else str(_to_int(m.group(1)))
            break
    run = _best_run(runs, word)
    lenient = value
    if lenient is None and run:
        lenient = str(run.count(letter)) if letter else str(len(run))
    return Parsed(value, bool(runs), lenient)
