"""Dig answers out of free-text replies.

Strict reading (the headline metric): an explicit answer, e.g. a lone letter, a quoted
letter, "... is n.", "ends with r.", "the letter 'd' is in position 1", "The letter b.",
"appears 3 times", "three", "no z's". A letter that is part of a spelled-out sequence ("is h
o v e l") is *not* a strict answer: the reply never committed to one. Nor are these, though
they look like answers: the article "a" ("is a consonant"); a letter the reply only talks
about ("The letter 'x' is a special letter", "The letter 'L' is not available in the word");
a refusal ("I don't have the ability to count letters" is no 0); a word length ("has 5
letters", when a letter's count was asked); list numbering ("1. The letter ...").
A count question's reply with no count phrase falls back on its lone numbers ("There are 10
letters in it; 3 of them are r" -> 3).

Spelled-out detection: a run of >= 3 isolated letters joined by one and the same separator
("h-o-v-e-l", "h, o, v, e, l", "h o v e l"). A newline or a change of separator (". " after an
answer, " -> " before one) ends a run, so an answer written next to a spelling is not
swallowed by it. A letter glued in front of an otherwise good spelling ("l p e l i c a n")
is an answer, not part of the spelling. A LoRA trained on spelling tends to answer by spelling
the word; we measure that rate separately and derive a clearly labelled *lenient* reading from
the spelling (the k-th letter of the run, the letter's count in it), so a reader can tell lost
knowledge from a changed answer format.

Several answers in one reply (the ambiguity rule). Every answer the reply commits to is a
candidate; repeating the same answer is not ambiguity.
  1. All candidates agree: that is the answer.
  2. They differ and the reply corrects itself between them ("No wait", "actually", "I mean",
     ...): ambiguous.
  3. They differ: the candidates *bound to the asked position* win if they all agree. A letter
     is bound to the position its own phrase names ("'d' is in position 1", "'b' is the last
     letter") or else to the position named nearest before it in the same sentence ("the
     third is 'l'", "ends with r"); it is bound to the asked position when that names k, or
     "last"/"final"/"end" and the question asked for the last letter (or k is the word's
     length). A count has no position: differing counts stay ambiguous.
  4. Otherwise: ambiguous.
So "The first letter is 'p', the second is 'e', and the third is 'l'" reads l when the 3rd
letter was asked, and is ambiguous when the 4th was. An ambiguous reply has no strict value
(value None, ambiguous True); its lenient reading may still come from a spelling.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher

NUMBER_WORDS = {
    "zero": 0, "one": 1, "once": 1, "single": 1, "two": 2, "twice": 2, "three": 3,
    "thrice": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11,
    "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17,
    "eighteen": 18, "nineteen": 19, "twenty": 20,
}
ORDINAL_WORDS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8,
    "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13, "fourteenth": 14,
    "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18, "nineteenth": 19, "twentieth": 20,
}
_NUMWORD = r"zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|" \
           r"sixteen|seventeen|eighteen|nineteen|twenty"
_ORDWORD = "|".join(ORDINAL_WORDS)
_OQ = "\"'“‘`*("  # opening quote-like characters
_CQ = "\"'”’`*)"
_THINK = re.compile(r"<think>.*?</think>", re.S)
# A letter standing alone; the "s" of "it's" / "r's" is not alone.
_ISOLATED_LETTER = re.compile(r"(?<![A-Za-z0-9])(?<![A-Za-z]['’])[A-Za-z](?![A-Za-z0-9])")
_RUN_GAP = re.compile(r"[ \t,\-.|/>:;_+'\"`*“”‘’]*")  # fullmatch; no newline: a line break ends a run
# What may follow a bare (unquoted) letter for it to be an answer: the end of a clause. This is
# what keeps the article out: "is a consonant" is not "is a".
_CLAUSE_END = r"(?=[ \t]*(?:[.,;:!?)(\]\n]|-(?![A-Za-z])|$))"
_LEAD_END = r"(?=[ \t]*(?:[.,;!)(\n]|$))"  # the same, less ":" (an "A: ..." label is no answer) and "-"
_SENTENCE_BREAK = re.compile(r"[.!?;](?=\s)|\n")
_SELF_CORRECTION = re.compile(
    r"\b(?:no,?\s+wait|wait|actually|i\s+mean|correction|rather|oops|on\s+second\s+thought|scratch\s+that)\b", re.I)


Run = tuple[int, int, str]  # (start, end, letters) of a spelled-out run


@dataclass(frozen=True)
class Parsed:
    value: str | None  # strict answer; None = no parseable answer (or an ambiguous one)
    spelled: bool  # the reply spells a word out letter by letter
    lenient: str | None  # strict value if any, else a reading derived from the spelled-out letters
    ambiguous: bool = False  # the reply commits to different answers (see the module docstring)

    @property
    def answered(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class _Candidate:
    value: str
    start: int  # where the answer itself stands in the text
    bound: bool = False  # tied to the asked position (letter questions only)


def clean(reply: str) -> str:
    """Drop think blocks (complete or dangling) and surrounding whitespace."""
    text = _THINK.sub(" ", reply)
    text = text.replace("<think>", " ").replace("</think>", " ")
    return text.strip()


# ---------------------------------------------------------------- spelled-out runs

def _separator(gap: str) -> str | None:
    """The separator a gap between two isolated letters stands for; None if it ends a run."""
    return re.sub(r"\s", "", gap) if _RUN_GAP.fullmatch(gap) else None


def spelled_runs(text: str, min_len: int = 3) -> list[Run]:
    """(start, end, letters) for each run of >= min_len isolated letters joined by one separator."""
    runs: list[Run] = []
    cur: list[re.Match] = []
    sep: str | None = None

    def close():
        if len(cur) >= min_len:
            runs.append((cur[0].start(), cur[-1].end(), "".join(x.group() for x in cur).lower()))

    for m in _ISOLATED_LETTER.finditer(text):
        gap_sep = _separator(text[cur[-1].end():m.start()]) if cur else None
        if gap_sep is None:  # no run goes on across this gap
            close()
            cur = []
        elif sep is not None and gap_sep != sep:
            # The separator changes. Three letters or more were a run, which ends here ("p-e-l-i-c-a-n -> l");
            # two were an answer and the spelling's first letter ("l. P-e-l-i-c-a-n"): that letter starts the run.
            close()
            cur = [] if len(cur) >= min_len else cur[-1:]
        sep = gap_sep if cur else None
        cur.append(m)
    close()
    return runs


def _glued_answer(letters: str, word: str) -> bool:
    """Whether the run's first letter is an answer glued in front of a spelling of the word:
    without it the run spells the word (nearly) and better than with it."""
    rest = SequenceMatcher(None, letters[1:], word).ratio()
    return rest >= 0.8 and rest > SequenceMatcher(None, letters, word).ratio()


def _aligned_runs(text: str, word: str) -> tuple[list[Run], list[_Candidate]]:
    """Spelled runs with any glued-on leading answer split off, and those answers as candidates."""
    runs, glued = [], []
    for start, end, letters in spelled_runs(text):
        if _glued_answer(letters, word):
            glued.append(_Candidate(letters[0], start))
            start = _ISOLATED_LETTER.search(text, start + 1).start()
            letters = letters[1:]
        runs.append((start, end, letters))
    return runs, glued


def _in_run(pos: int, runs: list[Run]) -> bool:
    return any(s <= pos < e for s, e, _ in runs)


def _best_run(runs: list[Run], word: str) -> str | None:
    """The run that most resembles the word (exactly it, then most letters in common, then longest)."""
    if not runs:
        return None
    return max((r[2] for r in runs), key=lambda s: (s == word, len(set(s) & set(word)), len(s)))


# ---------------------------------------------------------------- the ambiguity rule

def _decide(cands: list[_Candidate], text: str) -> tuple[str | None, bool]:
    """(value, ambiguous) from the candidate answers, by the rule in the module docstring."""
    values = {c.value for c in cands}  # a repeated answer is one answer
    if len(values) <= 1:
        return (values.pop() if values else None), False
    first, last = min(c.start for c in cands), max(c.start for c in cands)
    if _SELF_CORRECTION.search(text, first, last):
        return None, True
    bound = {c.value for c in cands if c.bound}
    if len(bound) == 1:
        return bound.pop(), False
    return None, True


# ---------------------------------------------------------------- letter questions

_LETTER = rf"[{_OQ}]*([A-Za-z])[{_CQ}]*"
_QUOTED_LETTER = rf"[{_OQ}]+([A-Za-z])[{_CQ}]+"
# A reference to a position: "3rd", "third", "position 3", "last"/"final"/"end(s)".
_POSITION_REF = re.compile(
    rf"\b(?:(\d+)(?:st|nd|rd|th)|({_ORDWORD})|position\s+(\d+)|(last|final|end|ends|ending))\b", re.I)
# Words that introduce an answer, and what may stand between them and the letter.
_TRIGGER = r"(?:\b(?:is|was|be|with)\b|\bit['’]?s\b|:|->|=>|=)\**"  # "\**": markdown, "**Answer:** l"
_FILLER = r"(?:(?:the|a|an)\s+)?(?:(?:single\s+)?letter\s+(?:called\s+|named\s+)?)?"
_LETTER_PATTERNS = [
    # the whole reply is one letter: "n", "'n'", "**l**", "Letter l"
    re.compile(rf"^\W*(?:(?:the\s+)?letter\s+)?{_LETTER}\W*$", re.I),
    # the reply starts with a letter that ends its clause: "l\np-e-l-i-c-a-n", "l (p-e-l-i-c-a-n)"
    re.compile(rf"^{_LETTER}{_LEAD_END}"),
    # "is 'n'", "answer: **l**", "is the letter 'e' ...", "-> l"
    re.compile(rf"{_TRIGGER}\s*{_FILLER}{_QUOTED_LETTER}", re.I),
    # "is n.", "ends with r.", "it's e", "is a." (but not "is a consonant")
    re.compile(rf"{_TRIGGER}\s*{_FILLER}([A-Za-z]){_CLAUSE_END}", re.I),
    # "The answer is B because ...": after "answer is" a bare letter needs no clause end, but "a"
    # or "I" before a word is still an article or a pronoun
    re.compile(rf"\b(?:answer|letter)\s*(?:is|:)\**\s*:?\s*{_FILLER}(?![aAI]\s+[A-Za-z])([A-Za-z])(?![A-Za-z0-9'’])",
               re.I),
    # "The letter b.", "In position 8, the letter c."
    re.compile(rf"\bletter\s+{_LETTER}{_CLAUSE_END}", re.I),
]
# The letter's own phrase names its position: "'d' is in position 1", "the letter p is the 3rd letter".
_STATED_POSITION = re.compile(
    rf"(?:{_QUOTED_LETTER}|\bletter\s+([A-Za-z]))[{_CQ}]*\s+is\s+(?:"
    rf"(?:in|at)\s+(?:the\s+)?(position\s+\d+|\w+\s+position)|the\s+(\w+)\s+letter|the\s+(end|ending)\b)", re.I)


def _ref_position(m: re.Match, n_letters: int) -> int:
    """The 1-based position a _POSITION_REF match names (the last letter counts as n_letters)."""
    number, ordinal, pos, last = m.groups()
    if last:
        return n_letters
    if ordinal:
        return ORDINAL_WORDS[ordinal.lower()]
    return int(number or pos)


def _named_position(text: str, start: int, n_letters: int) -> int | None:
    """The position named nearest before `start` in the same sentence, if any."""
    sentence_start = max((m.end() for m in _SENTENCE_BREAK.finditer(text, 0, start)), default=0)
    refs = list(_POSITION_REF.finditer(text, sentence_start, start))
    return _ref_position(refs[-1], n_letters) if refs else None


def _letter_candidates(text: str, runs: list[Run], n: int, k: int, asked_as_last: bool) -> list[_Candidate]:
    """Every committed letter outside a spelling, bound or not to the asked position (n: the word's length)."""
    asked = {k, n} if asked_as_last else {k}
    found: dict[int, tuple[str, int | None]] = {}  # offset -> (letter, position its own phrase names)
    for m in _STATED_POSITION.finditer(text):
        ref = _POSITION_REF.search(m.group(3) or m.group(4) or m.group(5))
        idx = 1 if m.group(1) else 2
        found[m.start(idx)] = (m.group(idx).lower(), _ref_position(ref, n) if ref else None)
    for pat in _LETTER_PATTERNS:
        for m in pat.finditer(text):
            found.setdefault(m.start(1), (m.group(1).lower(), None))
    return [_Candidate(value, pos, (stated or _named_position(text, pos, n)) in asked)
            for pos, (value, stated) in sorted(found.items())
            if not _in_run(pos, runs)]  # a letter of a spelling is not an answer


def parse_letter(reply: str, word: str, k: int, asked_as_last: bool = False) -> Parsed:
    """Answer to "what is the k-th letter of word" (asked_as_last: "what is its last letter")."""
    text, word = clean(reply), word.lower()
    runs, glued = _aligned_runs(text, word)
    cands = sorted(_letter_candidates(text, runs, len(word), k, asked_as_last) + glued, key=lambda c: c.start)
    value, ambiguous = _decide(cands, text)
    lenient = value
    run = _best_run(runs, word)
    if lenient is None and run:
        idx = len(run) - 1 if asked_as_last else k - 1
        lenient = run[idx] if 0 <= idx < len(run) else None
    return Parsed(value, bool(runs), lenient, ambiguous)


# ---------------------------------------------------------------- count questions

def _to_int(token: str) -> int:
    token = re.sub(r"^a\s+", "", token.lower())  # "a single"
    return int(token) if token.isdigit() else NUMBER_WORDS[token]


# A number standing alone: not an ordinal ("3rd"), not part of a decimal ("0.5") or of a word.
_NUM_START = rf"(?<![\w.])(\d+|{_NUMWORD})"
_NUM = rf"{_NUM_START}(?!\w|\.\d)"
# After "is"/":" a number word must end its clause: "is one of the letters" is no count.
_NUM_AFTER_TRIGGER = rf"(?=\d|(?:{_NUMWORD})\b{_CLAUSE_END}){_NUM}"
_LENGTH_UNIT = r"(?!\s*(?:letters?|characters?|chars?|digits?|words?|syllables?|vowels?|consonants?)\b)"


def _count_patterns(letter: str | None) -> list[re.Pattern]:
    """Patterns whose group 1 is a committed count (no group: zero)."""
    unit = _LENGTH_UNIT if letter else ""  # a word length is not the count of a letter
    pats = [
        re.compile(rf"^\W*{_NUM}\W*$", re.I),  # the whole reply is a number
        re.compile(rf"{_NUM}\s+(?:times?|occurrences?|instances?)\b", re.I),
        re.compile(r"(?<![\w.])(\d+)x\b", re.I),  # "3x"
        re.compile(r"\b(once|twice|thrice)\b", re.I),
        # "is 3", "answer: 2", "= 4"; not the start of an enumeration "1, 2, 3", nor a ratio "100:12"
        re.compile(rf"(?:\b(?:is|are|answer|count|total(?:\s+of)?|equals|yields|gives)\b|=|(?<!\d):)\**\s*:?\s*[{_OQ}]*"
                   rf"{_NUM_AFTER_TRIGGER}{unit}(?!\s*,\s*\d)", re.I),
    ]
    if letter:
        L = rf"[{_OQ}]?{re.escape(letter)}[{_CQ}]?(?:['’]?s)?(?![A-Za-z0-9])"
        pats += [
            re.compile(rf"{_NUM_START}(?:(?<=\d)\s*|\s+){L}", re.I),  # "3 r's", "1g"
            re.compile(rf"\b(a\s+single)\s+{L}", re.I),  # "a single 'e'"
            re.compile(rf"\bno\s+(?:(?:the\s+)?letter\s+)?{L}", re.I),  # "no z's", "There is no letter 'z'"
            re.compile(rf"(?<![A-Za-z]){L}\s+(?:is|are)\s+(?:absent|missing|not\s+(?:present|there|found))", re.I),
            re.compile(rf"\b(?:does\s*n[o']?t|doesn't|never)\s+(?:contain|have|include)\s+"
                       rf"(?:the\s+letter\s+|any\s+)?{L}", re.I),
        ]
    # Absence said of the thing asked about. "I don't have the ability ..." is a refusal, not a zero.
    pats.append(re.compile(
        r"\b(?:does\s*n[o']?t|doesn't|do\s*n[o']?t|don't|never|not|isn't)\s+(?:appear|occur|show\s+up|found|present)"
        r"|\bno\s+(?:occurrences?|instances?)\b|\bnone\b", re.I))
    return pats


def _bare_numbers(text: str, letter: str | None) -> list[_Candidate]:
    """Every lone number (digits), for a reply no pattern reads; list numbering ("1. ") and, for
    a letter, word lengths left out."""
    text = re.sub(r"(?m)^\s*\d+\.\s", lambda m: " " * len(m.group()), text)  # same length: offsets hold
    pat = re.compile(rf"(?<![\w.])(\d+)(?!\w|\.\d){_LENGTH_UNIT if letter else ''}")
    return [_Candidate(str(int(m.group(1))), m.start()) for m in pat.finditer(text)]


def parse_number(reply: str, word: str, letter: str | None = None) -> Parsed:
    """Answer to "how many times does letter appear in word" (or, letter=None, "how many letters")."""
    text = clean(reply)
    runs = spelled_runs(text)
    cands = []
    for pat in _count_patterns(letter):
        for m in pat.finditer(text):
            value = 0 if not m.groups() else _to_int(m.group(1))
            cands.append(_Candidate(str(value), m.start()))
    if letter is None:  # "how many letters": "7 letters" is the answer itself
        cands += [_Candidate(m.group(1), m.start()) for m in re.finditer(r"\b(\d+)\s+(?:letters|characters)\b", text)]
    # No phrase reads as a count: fall back on the lone numbers, e.g. "There are 10 letters; 3 of them are r".
    cands = sorted(cands or _bare_numbers(text, letter), key=lambda c: c.start)
    value, ambiguous = _decide(cands, text)
    run = _best_run(runs, word.lower())
    lenient = value
    if lenient is None and run:
        lenient = str(run.count(letter)) if letter else str(len(run))
    return Parsed(value, bool(runs), lenient, ambiguous)
