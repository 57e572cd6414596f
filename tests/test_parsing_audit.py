"""Audit of the reply parser (spelling_exp/tasks/parsing.py) against an independent reading.

tests/data/smollm2_quickstart_replies.jsonl holds 600 real replies of the embedded SmolLM2-135M
(base and LoRA adapter) to this project's position and count questions. Each is read twice: by
the parser and by tests/helpers/simple_reader.py, a few lines of deliberately naive logic that
do not import the parser. Agreement (both give the same strict value, None == None):
567/600 = 94.5%.

Every one of the 33 disagreements was looked at and is listed in DOCUMENTED_DISAGREEMENTS with
its reason, under one of three headings: "parser right" (the simple reader is naive there),
"parser choice" (a documented reading of a garbled reply; see the parsing module docstring),
or a parser bug, which gets fixed rather than listed (none is left; the audit found one:
"100:12:12:..." was read as "answer: 12", now a ratio is no answer and the reply is ambiguous). A new disagreement fails
with the reply printed, and so does a listed one that no longer disagrees. Run with -s to see
the agreement figure and the per-model counts of answered / ambiguous / spelled replies.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from helpers.simple_reader import read_count, read_position

from spelling_exp.tasks.parsing import parse_letter, parse_number

DATA = Path(__file__).parent / "data" / "smollm2_quickstart_replies.jsonl"
MIN_AGREEMENT = 0.94  # measured: 567/600 = 0.945

PARSER_RIGHT, PARSER_CHOICE = "parser right", "parser choice"
DOCUMENTED_DISAGREEMENTS = {
    # --- parser right: the letter's own phrase states its position; the simple reader knows only
    # "the letter X is in position" and "is/:/with X".
    ("base", "position-00074"): f"{PARSER_RIGHT}: 'The letter \"E\" is the ending of the word' gives e",
    ("base", "position-00036"): f"{PARSER_RIGHT}: 'The letter \"C\" is the final letter' gives c",
    ("base", "position-00140"): f"{PARSER_RIGHT}: 'The letter 'B' is the last letter' gives b",
    ("base", "position-00085"): f"{PARSER_RIGHT}: 'The letter 'E' is the 1st letter' gives e",
    ("base", "position-00006"): f"{PARSER_RIGHT}: '\"d\" is in position 1' gives d",
    # --- parser right: a dotted spelling ("The letter o.t.o.n.i.o.n.") is no answer; the simple
    # reader's "the letter X." takes the spelling's first letter.
    ("adapter", "position-00103"): f"{PARSER_RIGHT}: 'i.e. i.e. f.o.r.y.s.t.' is a spelling, not the letter i",
    ("adapter", "position-00028"): f"{PARSER_RIGHT}: 'o.t.o.n.i.o.n.' is a spelling",
    ("adapter", "position-00076"): f"{PARSER_RIGHT}: 'r.e.u.g.n.i.n.s.' is a spelling",
    ("adapter", "position-00124"): f"{PARSER_RIGHT}: 'r. u.n. g. r. e. ...' is a spelling",
    ("adapter", "position-00141"): f"{PARSER_RIGHT}: 'the letter i.o.t.m.i.i.e.' is a spelling",
    # --- parser right: two different answers, both in a sentence about the end: ambiguous.
    ("base", "position-00005"): f"{PARSER_RIGHT}: 'ends with \"g\"' and 'followed by the letter \"A\"': ambiguous",
    # --- parser choice: a letter the reply only talks about is no answer (the simple reader takes
    # any lone letter after "is").
    ("base", "position-00078"): f"{PARSER_CHOICE}: 'The letter 'n' is not allowed ...' talks about n",
    ("base", "position-00080"): f"{PARSER_CHOICE}: 'The letter \"S\" is a special letter. It is a capital S'",
    ("base", "position-00102"): f"{PARSER_CHOICE}: 'The letter \"A\" is a special letter in Greek ...'",
    ("base", "position-00002"): f"{PARSER_CHOICE}: 'The letter \"x\" is a special letter that does not exist ...'",
    ("base", "position-00028"): f"{PARSER_CHOICE}: 'The letter 'f' is not a valid option ...'",
    ("base", "position-00098"): f"{PARSER_CHOICE}: 'The letter 'L' ... is a special letter ... referred to as a \"L\"'",
    ("base", "position-00083"): f"{PARSER_CHOICE}: 'The letter \"N\" is not a number ...'",
    # --- parser right: counts the simple reader misreads
    ("base", "count-00048"): f"{PARSER_RIGHT}: 'composed of two words' is no count",
    ("base", "count-00091"): f"{PARSER_RIGHT}: 'contains 20 p's, ... a total of 20 * 10 = 20' commits to 20",
    ("base", "count-00106"): f"{PARSER_RIGHT}: 'the only one that can make a word' is no count",
    ("base", "count-00118"): f"{PARSER_RIGHT}: '1. ... is 1.\\n2. The result is 1.': list numbering, answer 1",
    ("base", "count-00090"): f"{PARSER_RIGHT}: 'contains 2 r's (1 for each of the first two letters)' commits to 2",
    ("base", "count-00009"): f"{PARSER_RIGHT}: 'No, no, no!' is an interjection, not a zero",
    ("base", "count-00043"): f"{PARSER_RIGHT}: 'No, no, no, ...' is an interjection, not a zero",
    ("base", "count-00032"): f"{PARSER_RIGHT}: 'There is no number.' is no zero count",
    ("base", "count-00037"): f"{PARSER_RIGHT}: 'appears twice ... two instances ... four jugs' commits to 2",
    ("base", "count-00002"): f"{PARSER_RIGHT}: '1. The letter 'o' appears twice': list numbering, answer 2",
    ("base", "count-00046"): f"{PARSER_RIGHT}: 'In 1000000000000, the letter 'i' appears only once' gives 1",
    ("adapter", "count-00118"): f"{PARSER_RIGHT}: 'a fun one! The number 2 is found 2 times' gives 2",
    # --- parser choice: counts in garbled replies
    ("base", "count-00083"): f"{PARSER_CHOICE}: '4 numbers: 4 (...) and 3 (...)': the number after ':' is read, 4",
    ("base", "count-00042"): f"{PARSER_CHOICE}: 'There are 21194 in 'creaturize' and 21195 in 'rux'': the first",
    ("base", "count-00146"): f"{PARSER_CHOICE}: '1. The letter 'u' is present': list numbering is no count",
}


def _read_both(row: dict) -> tuple:
    if row["task"] == "position":
        return parse_letter(row["reply"], row["word"], row["k"], row["asked_as_last"]), read_position(row["reply"])
    return parse_number(row["reply"], row["word"], row["letter"]), read_count(row["reply"])


@pytest.fixture(scope="module")
def readings() -> list[tuple[dict, object, str | None]]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    return [(row, *_read_both(row)) for row in rows]


def _disagreements(readings) -> dict[tuple[str, str], tuple]:
    return {(row["model"], row["id"]): (row, p, s) for row, p, s in readings if p.value != s}


def test_the_data_is_600_distinct_replies(readings):
    assert len(readings) == 600
    assert len({(row["model"], row["id"]) for row, _, _ in readings}) == 600


def test_agreement_with_the_simple_reader(readings):
    n = len(readings)
    agree = n - len(_disagreements(readings))
    by_category = Counter(reason.split(":")[0] for reason in DOCUMENTED_DISAGREEMENTS.values())
    print(f"\nparser vs simple reader: {agree}/{n} = {agree / n:.1%} agree; documented disagreements: "
          f"{dict(by_category)}")
    assert agree / n >= MIN_AGREEMENT


def test_every_disagreement_is_documented(readings):
    new = {key: v for key, v in _disagreements(readings).items() if key not in DOCUMENTED_DISAGREEMENTS}
    assert not new, "undocumented disagreements (fix the parser or document the choice):\n" + "\n".join(
        f"{key} [{row['task']}, word={row['word']!r}, k={row.get('k')}, letter={row.get('letter')}]: "
        f"parser={p.value!r} (ambiguous={p.ambiguous}) simple={s!r}\n    reply: {row['reply']!r}"
        for key, (row, p, s) in new.items())


def test_no_documented_disagreement_is_stale(readings):
    disagreeing = _disagreements(readings)
    assert not [key for key in DOCUMENTED_DISAGREEMENTS if key not in disagreeing], "readers agree now: drop these"


def test_reading_summary(readings):
    """Per model: how many replies the parser reads as answered, ambiguous, spelled (printed with -s)."""
    counts: Counter = Counter()
    for row, p, _ in readings:
        for task in (row["task"], "all"):
            counts[row["model"], task, "n"] += 1
            counts[row["model"], task, "answered"] += p.answered
            counts[row["model"], task, "ambiguous"] += p.ambiguous
            counts[row["model"], task, "spelled"] += p.spelled
    print()
    for model in sorted({row["model"] for row, _, _ in readings}):
        for task in ("position", "count", "all"):
            c = {f: counts[model, task, f] for f in ("n", "answered", "ambiguous", "spelled")}
            print(f"{model:8} {task:8} n={c['n']:3}  answered={c['answered']:3}  ambiguous={c['ambiguous']:2}  "
                  f"spelled={c['spelled']:3}")
    assert sum(counts[m, "all", "n"] for m in ("base", "adapter")) == len(readings)
