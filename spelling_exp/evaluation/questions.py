"""Question sets built from hold-out words: position, count, and (optional) length.

Deterministic per seed. Strata are allocated exactly (largest remainder over the weights),
then assigned to words in a seeded order, so "first / middle / last" and "true count 0 / 1 /
2 / 3+" appear in the configured proportions. Every field needed to audit a question is
saved: the word, k or letter, the stratum, the true answer, word length and tokens.
"""
from __future__ import annotations

import string
from collections import Counter
from typing import Any

from spelling_exp.data.examples import seeded_rng
from spelling_exp.errors import ConfigError, SizeError, require

PLACEHOLDERS = {
    "position": {"word", "ordinal", "k"},
    "position_last": {"word"},
    "count": {"word", "letter"},
    "length": {"word"},
}
POSITION_STRATA = ("first", "middle", "last")
COUNT_STRATA = ("0", "1", "2", "3+")


def ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def validate_eval_config(cfg: Any) -> None:
    """Checks the schema cannot express (task and split names are enums, checked at composition)."""
    needed = set(cfg.tasks) | ({"position_last"} if "position" in cfg.tasks else set())
    for key in needed:
        texts = cfg.phrasings.get(key)
        if not texts:
            raise ConfigError(f"eval.phrasings.{key}: no phrasings given")
        for text in texts:
            names = {f for _, f, _, _ in string.Formatter().parse(text) if f}
            if names - PLACEHOLDERS[key]:
                raise ConfigError(f"eval.phrasings.{key}: unknown placeholder(s) {sorted(names - PLACEHOLDERS[key])} "
                                  f"in '{text}' (allowed: {sorted(PLACEHOLDERS[key])})")
    for name, strata, known in (("position_strata", cfg.position_strata, POSITION_STRATA),
                                ("count_strata", cfg.count_strata, COUNT_STRATA)):
        unknown = set(strata) - set(known)
        if unknown:
            raise ConfigError(f"eval.{name}: unknown stratum {sorted(unknown)} (known: {', '.join(known)})")
        if sum(strata.values()) <= 0:
            raise ConfigError(f"eval.{name}: weights sum to zero")
    if cfg.sampling.greedy and cfg.n_samples > 1:
        raise ConfigError("eval.n_samples > 1 with greedy decoding gives identical samples; use eval.n_samples=1")
    for key in ("n_questions", "n_samples", "batch_size", "max_new_tokens"):
        require(getattr(cfg, key) >= 1, f"eval.{key}", getattr(cfg, key), ">= 1")
    require(0 <= cfg.last_as_word <= 1, "eval.last_as_word", cfg.last_as_word, "in [0, 1]")
    s = cfg.sampling
    if not s.greedy:
        require(s.temperature > 0, "eval.sampling.temperature", s.temperature, "> 0 (or eval/sampling=greedy)")
        require(0 < s.top_p <= 1, "eval.sampling.top_p", s.top_p, "in (0, 1]")
        require(s.top_k >= 0, "eval.sampling.top_k", s.top_k, ">= 0 (0: no top-k cut)")
        require(0 <= s.min_p < 1, "eval.sampling.min_p", s.min_p, "in [0, 1)")


def _strata_sequence(weights: dict[str, float], order: tuple[str, ...], n: int, rng) -> list[str]:
    from spelling_exp.data.templates import Cell, allocate

    names = [s for s in order if weights.get(s, 0) > 0]
    total = sum(weights[s] for s in names)
    cells = [Cell(s, "", "", weights[s] / total) for s in names]
    seq = [c.category for c, count in zip(cells, allocate(cells, n)) for _ in range(count)]
    rng.shuffle(seq)
    return seq


def _word_cycle(rows: list[dict[str, Any]], rng):
    while True:
        order = list(rows)
        rng.shuffle(order)
        yield from order


def _position_question(row, stratum, rng, cfg):
    word = row["word"]
    n = len(word)
    if stratum == "first":
        k = 1
    elif stratum == "last":
        k = n
    else:
        k = rng.randint(2, n - 1)
    as_last = stratum == "last" and rng.random() < cfg.last_as_word
    key = "position_last" if as_last else "position"
    p = rng.randrange(len(cfg.phrasings[key]))
    prompt = cfg.phrasings[key][p].format(word=word, ordinal=ordinal(k), k=k)
    return {"task": "position", "stratum": stratum, "k": k, "asked_as_last": as_last,
            "phrasing": f"{key}/{p}", "prompt": prompt, "answer": word[k - 1]}


def _count_question(row, stratum, rng, cfg):
    word = row["word"]
    counts = Counter(word)
    if stratum == "0":
        choices = sorted(set(string.ascii_lowercase) - set(word))
    elif stratum == "3+":
        choices = sorted(c for c, m in counts.items() if m >= 3)
    else:
        choices = sorted(c for c, m in counts.items() if m == int(stratum))
    if not choices:
        return None
    letter = rng.choice(choices)
    p = rng.randrange(len(cfg.phrasings["count"]))
    return {"task": "count", "stratum": stratum, "letter": letter, "phrasing": f"count/{p}",
            "prompt": cfg.phrasings["count"][p].format(word=word, letter=letter), "answer": str(counts[letter])}


def _length_question(row, rng, cfg):
    p = rng.randrange(len(cfg.phrasings["length"]))
    return {"task": "length", "stratum": "all", "phrasing": f"length/{p}",
            "prompt": cfg.phrasings["length"][p].format(word=row["word"]), "answer": str(len(row["word"]))}


def _ask(task: str, row: dict[str, Any], stratum: str, rng, cfg: Any) -> dict[str, Any] | None:
    """One question about ``row``'s word in ``stratum``, or None if the word cannot serve it."""
    if task == "position":
        if stratum == "middle" and len(row["word"]) < 3:
            return None
        q = _position_question(row, stratum, rng, cfg)
    elif task == "count":
        q = _count_question(row, stratum, rng, cfg)
    else:
        q = _length_question(row, rng, cfg)
    if q is None:
        return None
    return {"word": row["word"], **q, "word_length": len(row["word"]), "word_tokens": row.get("n_tokens")}


def build_questions(holdout_rows: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
    """``cfg.n_questions`` questions per task in ``cfg.tasks`` over the given hold-out rows."""
    validate_eval_config(cfg)
    if not holdout_rows:
        raise SizeError("no hold-out words to ask about")
    rows = sorted(holdout_rows, key=lambda r: r["word"])
    out: list[dict[str, Any]] = []
    for task in cfg.tasks:
        rng = seeded_rng(cfg.seed, f"questions:{task}")
        if task == "position":
            strata = _strata_sequence(cfg.position_strata, POSITION_STRATA, cfg.n_questions, rng)
        elif task == "count":
            strata = _strata_sequence(cfg.count_strata, COUNT_STRATA, cfg.n_questions, rng)
        else:
            strata = ["all"] * cfg.n_questions
        # Each stratum walks its own seeded word order; words that cannot serve it (no letter
        # occurring 3+ times, too short for a middle position) are skipped.
        cursors = {s: _word_cycle(rows, seeded_rng(cfg.seed, f"words:{task}:{s}")) for s in sorted(set(strata))}
        for i, s in enumerate(strata):
            for _ in range(len(rows)):
                q = _ask(task, next(cursors[s]), s, rng, cfg)
                if q is not None:
                    break
            else:
                raise SizeError(f"eval: no hold-out word can serve {task} stratum '{s}'")
            out.append({"id": f"{task}-{i:05d}", **q})
    return out
