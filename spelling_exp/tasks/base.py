"""What a task (a question type) is, and the pieces its modules share.

A task module (position.py, count.py, ...) subclasses ``Task`` and says, in one place, what makes
that question type: the phrasing keys it reads and their placeholders, its strata, how it builds
questions from hold-out words (or that it does not), how it reads a reply, its trivial baselines,
its extra metrics and plotted breakdowns, and how a row of an external question file maps onto it.
Everything else (the evaluation recipe, metrics, comparison, reports) asks the registry
(tasks/registry.py) and never names a task.

Only the standard library and the light ``data`` helpers are imported: config checks use this.
"""
from __future__ import annotations

import string
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from spelling_exp.data.examples import seeded_rng
from spelling_exp.data.templates import Cell, allocate
from spelling_exp.errors import ConfigError, SizeError
from spelling_exp.tasks.parsing import Parsed
from spelling_exp.tasks.records import Question

Rule = Callable[[Question], str]  # a trivial baseline: a guess from the question alone


@dataclass(frozen=True)
class Breakdown:
    """A per-bin accuracy the report plots (every breakdown is exploratory)."""
    key: str  # the metrics key (by_word_length, by_k, ...)
    name: str  # plot file stem
    xlabel: str
    what: str  # "by word length": the title's end


# The breakdowns every generated task has (metrics.py computes them for every task).
WORD_LENGTH = ("by_word_length", "word length (letters)", "by word length")
WORD_TOKENS = ("by_word_tokens", "tokens per word (model tokenizer)", "by tokens per word")


class Task:
    """One question type. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    # Built from hold-out words; False: only from an external question set (eval.questions_file).
    generated: ClassVar[bool] = True
    # Integer answers: metrics add the mean absolute error, a confusion table and accuracy by true value.
    numeric: ClassVar[bool] = True
    confusion_plot: ClassVar[bool] = False  # the report draws the answered-vs-true heatmap
    # Phrasing key in eval.phrasings -> the placeholders its wordings may use.
    phrasings: ClassVar[dict[str, frozenset[str]]] = {}
    breakdowns: ClassVar[tuple[Breakdown, ...]] = ()
    # CharBench task name -> the stratum it maps to (None: the task derives it); see external.py.
    charbench: ClassVar[dict[str, str | None]] = {}

    # ---------------------------------------------------------------- config
    def phrasing_keys(self, cfg: Any) -> set[str]:
        """The eval.phrasings keys generated questions of this task need."""
        return set(self.phrasings)

    def check(self, cfg: Any) -> None:
        """Checks of ``eval`` settings this task reads that the schema cannot express. With
        ``eval.questions_file`` the file is checked by evaluation/external.py (the phrasings its
        rows need included), not here."""
        if not cfg.questions_file:
            check_phrasings(cfg, self.phrasing_keys(cfg), self.phrasings)

    # ---------------------------------------------------------------- questions
    def build(self, rows: list[dict[str, Any]], cfg: Any) -> list[Question]:
        """``cfg.n_questions`` questions (without ids) over the sorted hold-out rows."""
        raise ConfigError(f"eval.tasks: '{self.name}' questions are not generated; they come only from an "
                          "external question set (eval.questions_file)")

    def score(self, q: Question, reply: str) -> Parsed:
        raise NotImplementedError

    def choices(self, q: Question) -> dict[str, list[str]] | None:
        """Forced-choice candidates (evaluation/forced_choice.py): answer value -> the replies that
        say it. Integer answers: 0..12 (or the word's length, if longer), digits. None: not scored."""
        if not self.numeric:
            return None
        return {str(i): [str(i)] for i in range(max(12, len(q["word"])) + 1)}

    def baselines(self, questions: list[Question]) -> dict[str, Rule]:
        """Name -> rule; the default is the best constant (chosen with hindsight: an optimistic floor)."""
        best = Counter(q["answer"] for q in questions).most_common(1)[0][0]
        return {f"constant {best}": lambda q: best}

    def extra_metrics(self, rows: list[dict[str, Any]], breakdown: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        """Metrics beyond the common ones (metrics.py), from the joined question + prediction rows."""
        return {}

    # ---------------------------------------------------------------- external question files
    def from_jsonl(self, row: dict[str, Any], word: str, at: Any, cfg: Any) -> dict[str, Any]:
        """A question file's row of this task as a question (``at``: external.py's line context)."""
        raise at.error(f"field 'task'={self.name!r} cannot come from a question file")

    def from_charbench(self, row: dict[str, Any], word: str, at: Any, cfg: Any,
                       stratum: str | None) -> dict[str, Any] | None:
        """A CharBench row as a question, or None to skip it (counted as skipped)."""
        raise at.error(f"task {self.name!r} has no CharBench mapping")


# -------------------------------------------------------------------------------- shared helpers
def ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def check_phrasings(cfg: Any, keys: Any, placeholders: dict[str, frozenset[str]]) -> None:
    """Each phrasing key in ``keys`` has wordings, and they use only that key's placeholders."""
    for key in sorted(keys):
        texts = cfg.phrasings.get(key)
        if not texts:
            raise ConfigError(f"eval.phrasings.{key}: no phrasings given")
        allowed = placeholders[key]
        for text in texts:
            names = {f for _, f, _, _ in string.Formatter().parse(text) if f}
            if names - allowed:
                raise ConfigError(f"eval.phrasings.{key}: unknown placeholder(s) {sorted(names - allowed)} "
                                  f"in '{text}' (allowed: {sorted(allowed)})")


def check_strata(key: str, weights: dict[str, float], known: tuple[str, ...]) -> None:
    unknown = set(weights) - set(known)
    if unknown:
        raise ConfigError(f"eval.{key}: unknown stratum {sorted(unknown)} (known: {', '.join(known)})")
    if sum(weights.values()) <= 0:
        raise ConfigError(f"eval.{key}: weights sum to zero")


def strata_sequence(weights: dict[str, float], order: tuple[str, ...], n: int, rng: Any) -> list[str]:
    """n stratum labels in the configured proportions (largest remainder), in a seeded order."""
    names = [s for s in order if weights.get(s, 0) > 0]
    total = sum(weights[s] for s in names)
    cells = [Cell(s, "", "", weights[s] / total) for s in names]
    seq = [c.category for c, count in zip(cells, allocate(cells, n)) for _ in range(count)]
    rng.shuffle(seq)
    return seq


def word_cycle(rows: list[dict[str, Any]], rng: Any) -> Iterator[dict[str, Any]]:
    while True:
        order = list(rows)
        rng.shuffle(order)
        yield from order


def word_fields(row: dict[str, Any]) -> dict[str, Any]:
    """What a question records about its word: length, tokens and (data format >= 3) the
    contamination label, left out for older hold-out rows so their questions stay identical."""
    out = {"word_length": len(row["word"]), "word_tokens": row.get("n_tokens")}
    if "contamination" in row:
        out["contamination"] = row["contamination"]
    return out


def walk_strata(task: str, rows: list[dict[str, Any]], strata: list[str], seed: int,
                ask: Callable[[dict[str, Any], str], dict[str, Any] | None]) -> list[Question]:
    """One question per entry of ``strata``. Each stratum walks its own seeded word order; words
    that cannot serve it (``ask`` returns None: too short for a middle position, ...) are skipped."""
    cursors = {s: word_cycle(rows, seeded_rng(seed, f"words:{task}:{s}")) for s in sorted(set(strata))}
    out: list[Question] = []
    for s in strata:
        for _ in range(len(rows)):
            row = next(cursors[s])
            q = ask(row, s)
            if q is not None:
                break
        else:
            raise SizeError(f"eval: no hold-out word can serve {task} stratum '{s}'")
        out.append({"word": row["word"], **q, **word_fields(row)})  # type: ignore[typeddict-item]
    return out


def pick_phrasing(cfg: Any, key: str, rng: Any, **values: Any) -> tuple[str, str]:
    """(prompt, phrasing id) from one seeded draw among ``eval.phrasings[key]``."""
    p = rng.randrange(len(cfg.phrasings[key]))
    return cfg.phrasings[key][p].format(**values), f"{key}/{p}"


def baseline_accuracy(task: Task, questions: list[Question]) -> dict[str, Any]:
    """{"rules": {name: {"n", "k", "rate"}}, "best": name, "best_constant": name} over one task's questions."""
    if not questions:
        return {"rules": {}, "best": None, "best_constant": None}
    rules = {}
    for name, rule in task.baselines(questions).items():
        k = sum(rule(q) == q["answer"] for q in questions)
        rules[name] = {"n": len(questions), "k": k, "rate": k / len(questions)}
    ranked = sorted(rules, key=lambda n: (-rules[n]["rate"], n))
    return {"rules": rules, "best": ranked[0],
            "best_constant": next((n for n in ranked if n.startswith("constant")), None)}
