"""Contamination labels: how close a hold-out word comes to a word whose spelling was trained.

The hold-out is disjoint from the training words word for word, but a model trained to spell
"detailed" has practised every letter of "tailed", and one trained on "sweet" is one suffix away
from "sweetly". Every hold-out word gets one label, the first of these rules that matches:

``inflection``
    the hold-out word is a trained word plus one suffix (``sweet`` -> ``sweetly``, ``gill`` ->
    ``gilled``), or a trained word is the hold-out word plus one suffix (``sweet`` held out,
    ``sweetly`` trained). Suffixes: ``SUFFIXES``. Spelling rules, applied when they fit the
    base: plain concatenation (always); a doubled final consonant before a suffix that starts
    with a vowel (``stop`` -> ``stopped``: the base ends consonant + vowel + consonant, the last
    not w / x / y); a dropped final ``e`` before a vowel (``bake`` -> ``baking``, ``baked``); ``y`` -> ``i`` after a
    consonant, except before ``i`` (``happy`` -> ``happiness``, ``carried``); ``le`` -> ``ly``
    (``gentle`` -> ``gently``). One suffix only (``care`` -> ``carelessly`` is not matched).
``substring``
    a trained word of at least ``MIN_SUBSTRING`` (5) letters occurs inside the hold-out word
    (``house`` trained, ``greenhouse`` held out), or the hold-out word, at least 5 letters long,
    occurs inside a trained word (``detailed`` trained, ``tailed`` held out; ``applying`` ->
    ``plying``). The shared letters are always the shorter word, so the 5-letter minimum
    applies to it in both directions: short trained fragments (``ing``, ``tion``) do not count.
    The match recorded is the shortest trained word around the hold-out word (every letter
    practised) or else the longest trained word inside it. Inflection is checked first because
    nearly every inflection is also a substring.
``clean``
    neither.

Trained words are the words that have training examples (``examples_train.jsonl``), not every
extracted English token: a token never shown in a spelling example taught the model nothing.
Everything is compared lowercased. Each labelled row gets ``contamination`` (the label),
``contamination_match`` (the trained word, or None) and ``contamination_rule`` (how they relate,
e.g. ``sweet+ly``, ``stop+ed (double p)``, ``tailed in detailed``).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from spelling_exp.errors import ConfigError

LABELS = ("clean", "substring", "inflection")
EXCLUDABLE = ("substring", "inflection")  # the values data.holdout.exclude accepts
MIN_SUBSTRING = 5
SUFFIXES = ("s", "es", "ed", "ing", "er", "est", "ly", "ness", "ment", "ful", "less", "able")
VOWELS = frozenset("aeiou")


def validate_exclude(values: Iterable[str], key: str = "data.holdout.exclude") -> None:
    """Refuse a label ``exclude`` cannot name (one line naming the key and the allowed values)."""
    values = list(values)
    bad = [v for v in values if v not in EXCLUDABLE]
    if bad:
        raise ConfigError(f"{key}={values}: unknown value {', '.join(repr(str(v)) for v in bad)}; "
                          f"allowed: {', '.join(EXCLUDABLE)}")


def inflections(base: str) -> dict[str, str]:
    """Every form ``base`` takes with one suffix, mapped to the rule that makes it."""
    out: dict[str, str] = {}
    for suf in SUFFIXES:
        out.setdefault(base + suf, f"{base}+{suf}")
        starts_vowel = suf[0] in VOWELS
        last = base[-1]
        if (starts_vowel and len(base) >= 3 and last not in VOWELS and last not in "wxy"
                and base[-2] in VOWELS and base[-3] not in VOWELS):
            out.setdefault(base + last + suf, f"{base}+{suf} (double {last})")
        if starts_vowel and last == "e" and len(base) >= 3:
            out.setdefault(base[:-1] + suf, f"{base}+{suf} (drop e)")
        if last == "y" and len(base) >= 3 and base[-2] not in VOWELS and suf[0] != "i":
            out.setdefault(base[:-1] + "i" + suf, f"{base}+{suf} (y->i)")
        if suf == "ly" and base.endswith("le") and len(base) >= 4:
            out.setdefault(base[:-1] + "y", f"{base}+ly (le->ly)")
    out.pop(base, None)
    return out


def candidate_bases(word: str) -> set[str]:
    """Every base that ``inflections`` could turn into ``word`` (a superset; callers verify)."""
    out = set()
    for suf in SUFFIXES:
        if len(word) > len(suf) and word.endswith(suf):
            stem = word[:-len(suf)]
            out.update({stem, stem + "e"})
            if len(stem) >= 2 and stem[-1] == stem[-2]:
                out.add(stem[:-1])
            if stem.endswith("i"):
                out.add(stem[:-1] + "y")
    if word.endswith("ly"):
        out.add(word[:-1] + "e")  # gently <- gentle
    out.discard(word)
    return out


class ContaminationIndex:
    """Labels words against a fixed set of trained words (see the module docstring)."""

    def __init__(self, trained_words: Iterable[str]):
        self.trained = frozenset(w.lower() for w in trained_words)
        # Every proper substring of >= MIN_SUBSTRING letters of a trained word -> the trained
        # words containing it (the reverse substring direction is then one lookup).
        self._inside: dict[str, list[str]] = {}
        for t in sorted(self.trained):
            n = len(t)
            for size in range(MIN_SUBSTRING, n):
                for i in range(n - size + 1):
                    self._inside.setdefault(t[i:i + size], []).append(t)

    def label(self, word: str) -> dict[str, Any]:
        """{"contamination", "contamination_match", "contamination_rule"} for one word."""
        w = word.lower()
        # inflection: a trained base (the longest, then alphabetical), then a trained inflected form
        bases = sorted((b for b in candidate_bases(w) if b in self.trained and w in inflections(b)),
                       key=lambda b: (-len(b), b))
        if bases:
            return _row("inflection", bases[0], inflections(bases[0])[w])
        forms = sorted(f for f in inflections(w) if f in self.trained)
        if forms:
            forms.sort(key=lambda f: (len(f), f))
            return _row("inflection", forms[0], inflections(w)[forms[0]])
        # substring: the shortest trained word around w (every letter of w practised), else the
        # longest trained word inside w
        n = len(w)
        outer = sorted(self._inside.get(w, []), key=lambda t: (len(t), t)) if n >= MIN_SUBSTRING else []
        if outer:
            return _row("substring", outer[0], f"{w} in {outer[0]}")
        inner = [w[i:i + size] for size in range(n - 1, MIN_SUBSTRING - 1, -1) for i in range(n - size + 1)]
        inner = sorted((s for s in inner if s in self.trained), key=lambda s: (-len(s), s))
        if inner:
            return _row("substring", inner[0], f"{inner[0]} in {w}")
        return _row("clean", None, None)


def _row(label: str, match: str | None, rule: str | None) -> dict[str, Any]:
    return {"contamination": label, "contamination_match": match, "contamination_rule": rule}


def label_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Rows per label, every label present (0 when none)."""
    counts = dict.fromkeys(LABELS, 0)
    for r in rows:
        counts[r["contamination"]] += 1
    return counts


def direction_counts(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Contaminated rows by which word is the longer one: the trained word inside the hold-out
    word or the reverse; the hold-out word a trained word plus a suffix or the reverse."""
    out = {"substring": {"trained_in_holdout": 0, "holdout_in_trained": 0},
           "inflection": {"holdout_is_trained_plus_suffix": 0, "trained_is_holdout_plus_suffix": 0}}
    for r in rows:
        label, match = r["contamination"], r.get("contamination_match")
        if label in out and match:
            trained_shorter = len(match) < len(r["word"])
            out[label][list(out[label])[0 if trained_shorter else 1]] += 1
    return out


def describe_rules() -> dict[str, Any]:
    """The rule set, recorded in the data manifest."""
    return {"order": ["inflection", "substring", "clean"], "suffixes": list(SUFFIXES),
            "spelling_rules": ["plain", "double final consonant before a vowel", "drop final e before a vowel",
                               "y->i after a consonant (not before i)", "le->ly"],
            "min_substring_length": MIN_SUBSTRING,
            "substring_match": "shortest trained word containing the hold-out word, else the longest inside it",
            "against": "words with training examples (examples_train.jsonl)"}
