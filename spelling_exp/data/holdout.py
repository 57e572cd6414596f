"""Hold-out words: an external English word list, provably disjoint from training words.

Sources: ``english_words`` (the `english-words` PyPI package; web2 = Webster's 2nd, gcide)
or ``file`` (one word per line). Filters: ASCII letters only and all lowercase (which also
drops proper nouns such as "Aaron"), a length range, and optionally a minimum number of
tokens under the model's tokenizer. Training words are removed (on_overlap=drop) or
refused (on_overlap=error); either way ``assert_disjoint`` checks the final lists. Every chosen
word is labelled clean / substring / inflection against the trained words
(data/contamination.py); labels in ``exclude`` are removed before sampling.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from spelling_exp.data.contamination import ContaminationIndex, validate_exclude
from spelling_exp.data.examples import seeded_rng
from spelling_exp.errors import ConfigError, HoldoutOverlapError, SizeError, WordListError

SOURCES = ("english_words", "file")


def read_word_file(path: str) -> list[str]:
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WordListError(f"word list not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise WordListError(f"word list unreadable: {p} ({type(e).__name__}: {e})") from None
    words = [line.strip() for line in text.splitlines()]
    words = [w for w in words if w and not w.startswith("#")]
    if not words:
        raise WordListError(f"word list is empty: {p}")
    return words


def load_source_words(cfg: Any) -> tuple[list[str], str]:
    """(raw words, description of the source)."""
    if cfg.source == "english_words":
        from english_words import get_english_words_set

        if not cfg.lists:
            raise ConfigError("data.holdout.lists is empty; name at least one english-words list (web2, gcide)")
        try:
            words = get_english_words_set(list(cfg.lists), alpha=False, lower=False)
        except ValueError as e:
            raise ConfigError(f"data.holdout.lists: {e}") from None
        return sorted(words), f"english-words:{'+'.join(cfg.lists)}"
    if cfg.source == "file":
        if not cfg.path:
            raise ConfigError("data.holdout.source=file needs data.holdout.path")
        return read_word_file(cfg.path), f"file:{cfg.path}"
    raise ConfigError(f"data.holdout.source: unknown source '{cfg.source}' (known: {', '.join(SOURCES)})")


def filter_candidates(raw: Iterable[str], cfg: Any) -> list[str]:
    banned = tuple(s.lower() for s in cfg.exclude_substrings)
    keep = {w for w in (r.strip() for r in raw)
            if w.isascii() and w.isalpha() and w.islower() and cfg.min_length <= len(w) <= cfg.max_length
            and not any(b in w for b in banned)}
    return sorted(keep)


def assert_disjoint(holdout: Iterable[str], training: Iterable[str]) -> None:
    train = {w.lower() for w in training}
    overlap = sorted({w for w in holdout if w.lower() in train})
    if overlap:
        shown = ", ".join(overlap[:5]) + (" ..." if len(overlap) > 5 else "")
        raise HoldoutOverlapError(f"{len(overlap)} hold-out word(s) are also training words: {shown}")


def build_holdout(
    raw: list[str], training_words: Iterable[str], tokenizer: Any, cfg: Any, seed: int,
    trained_words: Iterable[str] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """Validation and test splits as rows {word, n_tokens, contamination, contamination_match,
    contamination_rule}, plus filter counts.

    ``training_words`` (every extracted token) is what the hold-out must not contain;
    ``trained_words`` (the words with training examples; default: ``training_words``) is what
    the contamination labels are measured against.
    """
    validate_exclude(cfg.exclude)
    training = {w.lower() for w in training_words}
    index = ContaminationIndex(training if trained_words is None else trained_words)
    exclude = set(cfg.exclude)
    candidates = filter_candidates(raw, cfg)
    counts = {"source_words": len(raw), "after_format_filter": len(candidates)}
    if cfg.on_overlap == "error":
        assert_disjoint(candidates, training)
    candidates = [w for w in candidates if w not in training]
    counts["after_removing_training_words"] = len(candidates)

    need = cfg.n_validation + cfg.n_test
    rng = seeded_rng(seed, "holdout")
    rng.shuffle(candidates)
    chosen: list[dict[str, Any]] = []
    n_tokens_ok = excluded = 0
    chunk = max(256, 2 * need)
    # Tokenize and label in seeded-order chunks until we have enough: the full web2 list is 10x
    # larger than anything we need, and the result is the same as filtering everything first.
    for start in range(0, len(candidates), chunk):
        block = candidates[start:start + chunk]
        ids = tokenizer(block, add_special_tokens=False)["input_ids"]
        for w, t in zip(block, ids):
            if len(t) < cfg.min_tokens:
                continue
            n_tokens_ok += 1
            row = {"word": w, "n_tokens": len(t)}
            if exclude:  # label now to filter; else only the chosen rows are labelled (below)
                row.update(index.label(w))
                if row["contamination"] in exclude:
                    excluded += 1
                    continue
            chosen.append(row)
        if len(chosen) >= need:
            break
    counts["eligible_seen"] = len(chosen)
    counts["excluded_by_contamination_seen"] = excluded
    if len(chosen) < need:
        # Name the filter that removed the most words, with the count each step left.
        steps = [("lowercase ASCII letters, length "
                  f"{cfg.min_length}-{cfg.max_length} (data.holdout.min_length / max_length)", len(raw),
                  counts["after_format_filter"]),
                 ("not a training word", counts["after_format_filter"], counts["after_removing_training_words"]),
                 (f">= {cfg.min_tokens} tokens (data.holdout.min_tokens)", counts["after_removing_training_words"],
                  n_tokens_ok)]
        if exclude:
            steps.append((f"contamination not in data.holdout.exclude={sorted(exclude)}", n_tokens_ok, len(chosen)))
        worst = max(steps, key=lambda s: s[1] - s[2])
        raise SizeError(
            f"hold-out: asked for {cfg.n_validation} validation + {cfg.n_test} test words but only {len(chosen)} "
            f"pass the filters; the filter '{worst[0]}' removed the most ({worst[1]} -> {worst[2]} words); "
            f"{len(raw)} source words -> {counts['after_format_filter']} -> "
            f"{counts['after_removing_training_words']} -> {n_tokens_ok}"
            + (f" -> {len(chosen)}" if exclude else "")
        )
    chosen = chosen[:need]
    for row in chosen:
        if "contamination" not in row:
            row.update(index.label(row["word"]))
    splits = {"validation": chosen[:cfg.n_validation], "test": chosen[cfg.n_validation:]}
    assert_disjoint((r["word"] for rows in splits.values() for r in rows), training)
    assert_disjoint((r["word"] for r in splits["validation"]), (r["word"] for r in splits["test"]))
    return splits, counts
