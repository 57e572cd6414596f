"""Spelling example generation: balanced over the template mix, deterministic per seed.

Each (category, style, separator) cell gets its share of examples by largest-remainder
apportionment of the mix weights (so counts are exact, not sampled); templates within a
cell are used round-robin; words are drawn without replacement from a seeded shuffle.
"""
from __future__ import annotations

import random
from typing import Any

from spelling_exp.data.templates import Cell, Template, allocate
from spelling_exp.errors import SizeError


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
    shuffled_spellings: bool = False,
) -> list[dict[str, Any]]:
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

    out = []
    for i, ((cell, template), word) in enumerate(zip(slots, word_seq)):
        spelled = placebo_spelling(word, seed) if shuffled_spellings else word
        user, assistant = template.render(word, separators[cell.separator], spelled)
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


def placebo_spelling(word: str, seed: int) -> str:
    """The word's letters in a seeded order that is never the true one (when it can differ).

    Same letters, same length: a placebo example has the format and the letter inventory of a
    real one, only not the order. Words of one repeated letter ("aaa") cannot be misspelled
    this way and keep their spelling.
    """
    if len(set(word)) < 2:
        return word
    rng = seeded_rng(seed, f"placebo:{word}")
    letters = list(word)
    while "".join(letters) == word:
        rng.shuffle(letters)
    return "".join(letters)


def split_training_words(words: list[str], n_val_words: int, seed: int) -> tuple[list[str], list[str]]:
    """Disjoint (train, val) word lists, so validation loss measures unseen words."""
    shuffled = sorted(words)
    seeded_rng(seed, "word-split").shuffle(shuffled)
    return shuffled[n_val_words:], shuffled[:n_val_words]
