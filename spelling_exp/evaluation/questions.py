"""Question sets built from hold-out words: position, count, and (optional) length.

Deterministic per seed. Strata are allocated exactly (largest remainder over the weights),
then assigned to words in a seeded order, so "first / middle / last" and "true count 0 / 1 /
2 / 3+" appear in the configured proportions. Every field needed to audit a question is
saved: the word, k or letter, the stratum, the true answer, word length and tokens, and the
word's contamination label (data/contamination.py) when the hold-out rows carry one.

Count questions must not leak their answer through the asked letter. Drawing the letter from
the word's own letters (count >= 1) or from the letters *not* in it (count 0) would make rare
letters (j, q, x, z, ...) mark the zero stratum, and "rare letter -> 0, else 1" would beat any
constant answer. So the letter is drawn first, from one distribution shared by every count
stratum (shaped by the scarcest stratum, 3+, so mostly common letters; see _count_letter_plan),
each stratum asks about each letter in the same proportion (+-1 question), and only then is a
word with that letter count picked. The letter then says nothing about the true count; word length still
does (a word with three e's is long), so metrics report word length per true count.
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


def check_phrasings(cfg: Any, keys: Any) -> None:
    """Each phrasing key in ``keys`` has wordings, and they use only that key's placeholders."""
    for key in sorted(keys):
        texts = cfg.phrasings.get(key)
        if not texts:
            raise ConfigError(f"eval.phrasings.{key}: no phrasings given")
        for text in texts:
            names = {f for _, f, _, _ in string.Formatter().parse(text) if f}
            if names - PLACEHOLDERS[key]:
                raise ConfigError(f"eval.phrasings.{key}: unknown placeholder(s) {sorted(names - PLACEHOLDERS[key])} "
                                  f"in '{text}' (allowed: {sorted(PLACEHOLDERS[key])})")


def validate_eval_config(cfg: Any) -> None:
    """Checks the schema cannot express (task and split names are enums, checked at composition).

    With ``eval.questions_file`` the file's questions replace the generated ones: the file itself
    is checked by evaluation/external.py (the phrasings it needs included), not here.
    """
    if not getattr(cfg, "questions_file", None):
        if "occurrence" in cfg.tasks:
            raise ConfigError("eval.tasks: 'occurrence' questions are not generated; they come only from an "
                              "external question set (eval.questions_file)")
        check_phrasings(cfg, set(cfg.tasks) | ({"position_last"} if "position" in cfg.tasks else set()))
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


def count_stratum(n: int) -> str:
    return "3+" if n >= 3 else str(n)


def _count_question(row, stratum, letter, rng, cfg):
    word = row["word"]
    p = rng.randrange(len(cfg.phrasings["count"]))
    return {"task": "count", "stratum": stratum, "letter": letter, "phrasing": f"count/{p}",
            "prompt": cfg.phrasings["count"][p].format(word=word, letter=letter), "answer": str(word.count(letter))}


def _count_letter_plan(rows: list[dict[str, Any]], strata: list[str], seed: int) -> dict[str, list[str]]:
    """Per stratum, the letters its questions ask about, in a seeded order.

    One letter distribution P for every stratum: P(c) proportional to min over strata of
    (distinct words that can serve stratum s with letter c) / (questions in s). Then stratum s
    asks n_s * P(c) questions about c (largest remainder), never more than it has words for, so
    no (word, letter) question repeats. The scarcest stratum (3+) shapes P: mostly common letters.
    """
    from spelling_exp.data.templates import Cell, allocate

    need = Counter(strata)
    supply = {(s, c): 0 for s in need for c in string.ascii_lowercase}
    for row in rows:
        for c in string.ascii_lowercase:
            s = count_stratum(row["word"].count(c))
            if s in need:
                supply[s, c] += 1
    weight = {c: min(supply[s, c] / need[s] for s in need) for c in string.ascii_lowercase}
    if sum(weight.values()) < 1:
        scarce = min(need, key=lambda s: sum(supply[s, c] for c in string.ascii_lowercase) / need[s])
        raise SizeError(f"eval: the hold-out words cannot serve count stratum '{scarce}' ({need[scarce]} questions) "
                        "with the letter distribution shared by all strata; lower eval.n_questions, use more "
                        "hold-out words, or change eval.count_strata")
    letters = [c for c in string.ascii_lowercase if weight[c] > 0]
    cells = [Cell(c, "", "", weight[c]) for c in letters]
    total = sum(weight[c] for c in letters)
    cells = [Cell(c.category, "", "", c.weight / total) for c in cells]
    plan = {}
    for s in sorted(need):
        seq = [c.category for c, k in zip(cells, allocate(cells, need[s])) for _ in range(k)]
        seeded_rng(seed, f"count-letters:{s}").shuffle(seq)
        plan[s] = seq
    return plan


def _count_questions(rows: list[dict[str, Any]], strata: list[str], rng, cfg: Any) -> list[dict[str, Any]]:
    plan = {s: iter(seq) for s, seq in _count_letter_plan(rows, strata, cfg.seed).items()}
    pools: dict[tuple[str, str], list[dict[str, Any]]] = {}
    out = []
    for s in strata:
        letter = next(plan[s])
        if (s, letter) not in pools:  # the words with this letter count, in a seeded order; each used once
            pool = [r for r in rows if count_stratum(r["word"].count(letter)) == s]
            seeded_rng(cfg.seed, f"count-words:{s}:{letter}").shuffle(pool)
            pools[s, letter] = pool
        row = pools[s, letter].pop()
        out.append({"word": row["word"], **_count_question(row, s, letter, rng, cfg), **_word_fields(row)})
    return out


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
    else:
        q = _length_question(row, rng, cfg)
    if q is None:
        return None
    return {"word": row["word"], **q, **_word_fields(row)}


def _word_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What a question records about its word: length, tokens and (data format >= 3) the
    contamination label, left out for older hold-out rows so their questions stay identical."""
    out = {"word_length": len(row["word"]), "word_tokens": row.get("n_tokens")}
    if "contamination" in row:
        out["contamination"] = row["contamination"]
    return out


def build_questions(holdout_rows: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
    """``cfg.n_questions`` questions per task in ``cfg.tasks`` over the given hold-out rows."""
    validate_eval_config(cfg)
    if not holdout_rows:
        raise SizeError("no hold-out words to ask about")
    rows = sorted(holdout_rows, key=lambda r: r["word"])
    out: list[dict[str, Any]] = []
    for task in cfg.tasks:
        rng = seeded_rng(cfg.seed, f"questions:{task}")
        if task == "count":
            strata = _strata_sequence(cfg.count_strata, COUNT_STRATA, cfg.n_questions, rng)
            out += [{"id": f"count-{i:05d}", **q} for i, q in enumerate(_count_questions(rows, strata, rng, cfg))]
            continue
        if task == "position":
            strata = _strata_sequence(cfg.position_strata, POSITION_STRATA, cfg.n_questions, rng)
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
