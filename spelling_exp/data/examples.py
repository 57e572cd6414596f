"""Spelling example generation: balanced over the template mix, deterministic per seed.

Each (category, style, separator) cell gets its share of examples by largest-remainder
apportionment of the mix weights (so counts are exact, not sampled); templates within a
cell are used round-robin; words are drawn without replacement from a seeded shuffle.
"""
from __future__ import annotations

import logging
import random
import string
from collections import Counter
from collections.abc import Callable
from typing import Any

from spelling_exp.data.templates import Cell, Template, allocate
from spelling_exp.errors import SizeError

log = logging.getLogger(__name__)


def seeded_rng(seed: int, purpose: str) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`: stable across runs and PYTHONHASHSEED.
    return random.Random(f"spelling_exp:{seed}:{purpose}")


def generate_examples(
    words: list[str],
    templates: dict[str, Template],
    cells: list[Cell],
    separators: dict[str, str],
    n: int,
    seed: int,
    split: str,
    reuse_words: bool = False,
    spellings: str = "real",
    count_tokens: Callable[[list[str]], list[int]] | None = None,
) -> list[dict[str, Any]]:
    """``spellings``: real, shuffled (the placebo) or random (format only). For the two controls,
    ``count_tokens`` (texts -> token counts) makes every example exactly as long in tokens as its
    real counterpart: a control spelling whose answer tokenizes differently is redrawn (seeded), so
    the arms differ in what the letters are, never in how many tokens they train on."""
    if n <= 0:
        return []
    if not words:
        raise SizeError(f"no words available for the {split} split")
    if n > len(words) and not reuse_words:
        raise SizeError(
            f"{split}: asked for {n} examples but only {len(words)} distinct words are available "
            f"(lower data.examples.n_{split}, or set data.examples.reuse_words=true)"
        )
    rng = seeded_rng(seed, f"examples:{split}")
    by_cell: dict[tuple[str, str], list[Template]] = {}
    for t in sorted(templates.values(), key=lambda t: t.id):
        by_cell.setdefault((t.category, t.style), []).append(t)

    slots: list[tuple[Cell, Template]] = []
    for cell, count in zip(cells, allocate(cells, n)):
        pool = list(by_cell[(cell.category, cell.style)])
        rng.shuffle(pool)
        slots.extend((cell, pool[i % len(pool)]) for i in range(count))
    rng.shuffle(slots)

    word_seq: list[str] = []
    while len(word_seq) < n:
        batch = list(words)
        rng.shuffle(batch)
        word_seq.extend(batch)

    rendered = [template.render(word, separators[cell.separator], control_spelling(word, spellings, seed))
                for (cell, template), word in zip(slots, word_seq)]
    if spellings != "real" and count_tokens is not None:
        rendered = _match_token_counts(rendered, slots, word_seq, separators, spellings, seed, count_tokens)
    out = []
    for i, (((cell, template), word), (user, assistant)) in enumerate(zip(zip(slots, word_seq), rendered)):
        out.append({
            "id": f"{split}-{i:06d}",
            "split": split,
            "word": word,
            "category": cell.category,
            "style": cell.style,
            "separator": cell.separator,
            "template_id": template.id,
            "user": user,
            "assistant": assistant,
        })
    return out


# Separated letters tokenize one way whatever they are, so a mismatch is rare and a redraw fixes it;
# a glued spelling (separator none) of a one-token word cannot be matched by other letters at all.
MAX_REDRAWS = 50


def _match_token_counts(rendered: list[tuple[str, str]], slots: list[tuple[Cell, Template]], word_seq: list[str],
                        separators: dict[str, str], spellings: str, seed: int,
                        count_tokens: Callable[[list[str]], list[int]]) -> list[tuple[str, str]]:
    def lengths(pairs: list[tuple[str, str]]) -> list[int]:  # user + answer: a spelling can be in either
        counts = count_tokens([u for u, _ in pairs] + [a for _, a in pairs])
        return [x + y for x, y in zip(counts[:len(pairs)], counts[len(pairs):])]

    want = lengths([t.render(w, separators[c.separator], w) for (c, t), w in zip(slots, word_seq)])
    have = lengths(rendered)
    out = list(rendered)
    unmatched: Counter[str] = Counter()
    for i in (i for i, (a, b) in enumerate(zip(want, have)) if a != b):
        (cell, template), word = slots[i], word_seq[i]
        for attempt in range(1, MAX_REDRAWS + 1):
            candidate = template.render(word, separators[cell.separator], control_spelling(word, spellings, seed,
                                                                                           attempt))
            if lengths([candidate])[0] == want[i]:
                out[i] = candidate
                break
        else:
            unmatched[cell.separator] += 1
    if unmatched:
        log.warning("%s spellings: %d of %d examples differ in token count from their real counterpart (by "
                    "separator: %s); glued letters (separator none) of a one-token word cannot be matched",
                    spellings, sum(unmatched.values()), len(rendered), dict(unmatched))
    return out


def control_spelling(word: str, spellings: str, seed: int, attempt: int = 0) -> str:
    """What an example of arm ``spellings`` spells ``word`` as: the word (real), its letters in a
    wrong order (shuffled) or random letters of the same length (random). ``attempt`` > 0: another
    seeded draw (token-count matching)."""
    if spellings == "real":
        return word
    if spellings == "shuffled":
        return placebo_spelling(word, seed, attempt)
    if spellings == "random":
        return random_spelling(word, seed, attempt)
    raise ValueError(f"unknown spellings {spellings!r}")


def random_spelling(word: str, seed: int, attempt: int = 0) -> str:
    """Random letters of the word's length, case kept per position: no letter inventory and no
    order, only the format of a spelling (each letter a-z equally likely, so it shares a letter
    with the word at a position about 1 time in 26). Never the word itself."""
    rng = seeded_rng(seed, f"random:{word}" + (f":{attempt}" if attempt else ""))
    while True:
        out = "".join((rng.choice(string.ascii_uppercase) if ch.isupper() else rng.choice(string.ascii_lowercase))
                      if ch.isalpha() else ch for ch in word)
        if out != word or not any(ch.isalpha() for ch in word):
            return out


def placebo_spelling(word: str, seed: int, attempt: int = 0) -> str:
    """The word's letters in a seeded order that is never the true one (when it can differ).

    Same letters, same length: a placebo example has the format and the letter inventory of a
    real one, only not the order. Words of one repeated letter ("aaa") cannot be misspelled
    this way and keep their spelling.
    """
    if len(set(word)) < 2:
        return word
    rng = seeded_rng(seed, f"placebo:{word}" + (f":{attempt}" if attempt else ""))
    letters = list(word)
    while "".join(letters) == word:
        rng.shuffle(letters)
    return "".join(letters)


def split_training_words(words: list[str], n_val_words: int, seed: int) -> tuple[list[str], list[str]]:
    """Disjoint (train, val) word lists, so validation loss measures unseen words."""
    shuffled = sorted(words)
    seeded_rng(seed, "word-split").shuffle(shuffled)
    return shuffled[n_val_words:], shuffled[:n_val_words]
