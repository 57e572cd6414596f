"""A deliberately simple second reading of replies, to audit spelling_exp/tasks/parsing.py.

Written apart from the parser and never importing it: a few lines of obviously-correct logic
that return None whenever they are unsure. Where it and the parser disagree, one of them is
wrong, and tests/test_parsing_audit.py makes every such case visible.
"""
from __future__ import annotations

import re

NUMBER_WORDS = {"zero": 0, "one": 1, "once": 1, "two": 2, "twice": 2, "three": 3, "thrice": 3, "four": 4,
                "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}


def read_position(reply: str) -> str | None:
    """The letter a reply gives: a lone letter; "the letter X." or "the letter X is in position";
    else the last lone letter after "is", ":" or "with" (None when three or more follow: that is
    a spelling, not an answer)."""
    letters_only = re.sub(r"[^A-Za-z]", "", reply)
    if len(letters_only) == 1:
        return letters_only.lower()
    stated = re.search(r"\bletter ['\"]?([A-Za-z])['\"]?(?: is in position\b|\.|$)", reply, re.I)
    if stated:
        return stated.group(1).lower()
    trigger = re.search(r"\b(?:is|with)\b|:", reply)
    if not trigger:
        return None
    rest = reply[trigger.end():]
    rest = re.sub(r"\b(?:[aA]\s+(?=[A-Za-z]{2})|I(?:['’][a-z]+)?(?= ))", " ", rest)  # the article "a"; "I", "I'm"
    lone = re.findall(r"(?<![A-Za-z])(?<![A-Za-z]['’])([A-Za-z])(?![A-Za-z])", rest)
    return lone[-1].lower() if 1 <= len(lone) <= 2 else None


def read_count(reply: str) -> str | None:
    """The one number a reply gives, once word lengths and ordinals are set aside; a reply with
    no number that says the letter is absent gives 0."""
    text = reply.lower()
    text = re.sub(r"\d+\s*(?:letters?|characters?|digits?)\b", " ", text)  # a word length
    text = re.sub(r"\d+(?:st|nd|rd|th)\b", " ", text)  # an ordinal
    numbers = {int(n) for n in re.findall(r"(?<![\d.])\d+(?!\.?\d)", text)}
    numbers |= {NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text) if w in NUMBER_WORDS}
    if len(numbers) == 1:
        return str(numbers.pop())
    if not numbers and re.search(r"\b(?:no|none|zero|absent)\b|\bnot appear", text):
        return "0"
    return None
