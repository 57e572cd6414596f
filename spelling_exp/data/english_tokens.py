"""English token extraction: which vocabulary entries become training words.

The rule (documented in README too), applied to every regular (non-added) token id:

1. decode the single token to text (byte-level BPE: ``Ġpel`` -> `` pel``);
2. strip one leading space, the word-start marker, if ``strip_leading_space``;
3. keep it only if it is ASCII letters only (``ascii_letters_only``) and its length lies in
   ``[min_length, max_length]``;
4. lowercase it (``lowercase``) and deduplicate, so "The", " the" and "the" count once.

A token is a training word because the tokenizer made it one, not because a dictionary
lists it: fragments such as "ing" or "tion" are kept deliberately, since they are exactly
the units whose spelling a model has to learn.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

RULE_VERSION = "v1"


def describe_rule(rule: Any) -> dict[str, Any]:
    d = asdict(rule) if hasattr(rule, "__dataclass_fields__") else dict(rule)
    d["version"] = RULE_VERSION
    return d


def normalize_token_text(text: str, rule: Any) -> str | None:
    """Apply steps 2-4 of the rule to one decoded token; None if it is not a word."""
    if rule.strip_leading_space and text.startswith(" "):
        text = text[1:]
    if rule.ascii_letters_only and not (text.isascii() and text.isalpha()):
        return None
    if not rule.ascii_letters_only and not text.isalpha():
        return None
    if not rule.min_length <= len(text) <= rule.max_length:
        return None
    return text.lower() if rule.lowercase else text


def regular_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the learned vocabulary: everything except added/special tokens."""
    added = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
    vocab_size = len(tokenizer)
    return [i for i in range(vocab_size) if i not in added]


def extract_english_tokens(tokenizer: Any, rule: Any) -> tuple[list[str], dict[str, int]]:
    ids = regular_token_ids(tokenizer)
    # One batched Rust call instead of 150k Python-level decode() calls.
    texts: Iterable[str] = tokenizer.batch_decode([[i] for i in ids], clean_up_tokenization_spaces=False)
    kept: set[str] = set()
    n_word_like = 0
    for text in texts:
        word = normalize_token_text(text, rule)
        if word is not None:
            n_word_like += 1
            kept.add(word)
    words = sorted(kept)
    counts = {
        "vocab_size": len(tokenizer),
        "regular_tokens": len(ids),
        "tokens_passing_rule": n_word_like,
        "unique_words": len(words),
    }
    return words, counts
