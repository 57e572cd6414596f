"""External question sets (``eval.questions_file``), asked and scored by the same evaluator.

Instead of generating questions from the hold-out words, an evaluation can read them from a file
(``eval.questions_format``: ``auto`` picks by extension, ``.jsonl`` / ``.json`` -> jsonl, ``.csv``
-> charbench). Every question becomes a row of the same shape as a generated one (id, task,
word, k or letter, stratum, prompt, answer, word length, tokens per word), so prompts, parsing,
metrics, the comparison and the report need nothing else.

**JSONL**, one object per line (blank lines skipped):

    {"id": "q1", "task": "position", "word": "pelican", "k": 3, "answer": "l"}
    {"id": "q2", "task": "count", "word": "strawberry", "letter": "r", "answer": 3, "prompt": "..."}
    {"id": "q3", "task": "occurrence", "word": "banana", "letter": "a", "stratum": "last",
     "index_base": 1, "answer": 6, "prompt": "At which position (1 = first) is the last 'a' in 'banana'?"}

Required: ``id`` (unique), ``task`` (position | count | occurrence), ``word``, ``answer``, plus
``k`` (position, 1-based) or ``letter`` (count, occurrence). ``prompt`` is used verbatim as the
user turn (rendered through the model's chat template like every prompt); without one, a
position or count question is worded with ``eval.phrasings``, the wording chosen by a seeded
draw per question id (a last-letter ``k`` is asked as "the last letter" with probability
``eval.last_as_word``, as for generated questions). ``stratum`` is optional: derived, when
missing, as for generated questions (position: first / middle / last from k; count: 0 / 1 / 2
/ 3+ from the answer). ``occurrence`` rows must bring their ``prompt``, their ``stratum``
(first | last: which occurrence is asked for) and their ``index_base`` (0 or 1: how the prompt
counts); ``asked_as_last`` (position) is optional.

**CharBench-style CSV** with columns ``question, answer, word, character, task`` (an ``id``
column is used when present, else ``charbench-<row>``). Tasks: ``count_character_frequency``
-> ``count``; ``find_first_occurrence`` / ``find_last_occurrence`` -> ``occurrence`` with
stratum first / last. Other tasks (``count_unique_chars``, ...) are skipped and counted.

**The index rule.** CharBench's positions are 0-indexed and its ``question`` text asks for a
0-based index. The question text is used verbatim, so the expected answer stays CharBench's
0-based index and the question records ``index_base: 0``; its ``k`` is always the 1-based
position (CharBench's index + 1), the same convention as ``k`` of a position question. In
general an occurrence question's ``answer`` is ``k - 1 + index_base``: the index in the base its
own prompt asks for. Occurrence replies are read with the number parser (``parse_number``)
and there is no lenient reading beyond the strict one.

**Checks** (exit 2 before any model loads, each naming the file line and field, or the
question id): required fields present and well-typed, ids unique, and every answer recomputed
from its word with exact character matching (``str.count`` / ``str.index`` / ``str.rindex``;
position letters case-insensitively): a wrong answer is refused with its id. A CharBench
occurrence row whose character is absent from the word and whose answer is -1 is skipped.

**Training words.** Each question's word goes through the hold-out's overlap check against the
training words (every extracted English token): ``eval.on_overlap=drop`` removes those
questions, ``error`` refuses the file naming the words, ``keep`` evaluates them all and reports
how many overlap (what evaluating a base model on a published set needs). Every question
records ``training_word``. The counts (rows, questions per task, skipped tasks, overlapping and
dropped) go to ``questions_source.json`` in the eval dir and to ``metrics.json`` ``meta``.
"""
from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spelling_exp import tasks
from spelling_exp.errors import ConfigError, HoldoutOverlapError, SizeError
from spelling_exp.storage.io import sha256_file
from spelling_exp.tasks.rows import RowContext, read_text

CHARBENCH_COLUMNS = ("question", "answer", "word", "character", "task")
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "charbench"}


def file_tasks() -> tuple[str, ...]:
    """The tasks a question file may name: every registered task that maps file rows."""
    return tuple(n for n in tasks.names() if type(tasks.get(n)).from_jsonl is not tasks.Task.from_jsonl)


def charbench_tasks() -> dict[str, tuple[str, str | None]]:
    """CharBench task -> (our task, stratum), from each task's ``charbench``; other CharBench tasks are skipped."""
    return {cb: (n, stratum) for n in tasks.names() for cb, stratum in tasks.get(n).charbench.items()}


@dataclass
class QuestionSet:
    questions: list[dict[str, Any]]
    source: dict[str, Any]  # what questions_source.json records


def resolve_format(path: str, fmt: Any) -> str:
    """The file's format: ``eval.questions_format``, or by extension when it is ``auto``."""
    if str(fmt) != "auto":
        return str(fmt)
    found = EXTENSIONS.get(Path(path).suffix.lower())
    if not found:
        raise ConfigError(f"eval.questions_file={path}: cannot tell its format by the extension "
                          f"({', '.join(EXTENSIONS)}); set eval.questions_format=jsonl or charbench")
    return found


def _jsonl_question(row: dict[str, Any], at: RowContext, cfg: Any) -> dict[str, Any]:
    if "id" not in row or row["id"] is None or (isinstance(row["id"], str) and not row["id"].strip()):
        raise at.error("missing field 'id'")
    if isinstance(row["id"], bool) or not isinstance(row["id"], (str, int)):
        raise at.error(f"field 'id' must be a string or an integer, got {row['id']!r}")
    at.qid = str(row["id"])
    task = read_text(row, "task", at)
    if task not in file_tasks():
        raise at.error(f"field 'task'={task!r} is not one of {', '.join(file_tasks())}")
    word = read_text(row, "word", at)
    if row.get("answer") is None or row.get("answer") == "":
        raise at.error("missing field 'answer'")
    return tasks.get(task).from_jsonl(row, word, at, cfg)


def _read_jsonl(path: Path, cfg: Any) -> tuple[list[dict[str, Any]], Counter, int]:
    questions, rows = [], 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        rows += 1
        at = RowContext(path, n)
        try:
            row = json.loads(line)
        except ValueError as e:
            raise at.error(f"not JSON ({e})") from None
        if not isinstance(row, dict):
            raise at.error("not a JSON object")
        q = _jsonl_question(row, at, cfg)
        questions.append({"id": at.qid, "word": row["word"], **q, "_line": n})
    return questions, Counter(), rows


def _read_charbench(path: Path, cfg: Any) -> tuple[list[dict[str, Any]], Counter, int]:
    questions, skipped, rows = [], Counter(), 0
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in CHARBENCH_COLUMNS if c not in header]
        if missing:
            raise ConfigError(f"eval.questions_file={path} line 1: missing column '{missing[0]}' "
                              f"(a CharBench file has columns {', '.join(CHARBENCH_COLUMNS)})")
        for i, row in enumerate(reader, start=1):
            rows += 1
            at = RowContext(path, reader.line_num)
            task = read_text(row, "task", at).strip()
            mapped = charbench_tasks().get(task)
            if mapped is None:
                skipped[task] += 1
                continue
            at.qid = (row.get("id") or "").strip() or f"charbench-{i:05d}"
            ours, stratum = mapped
            word = read_text(row, "word", at)
            read_text(row, "answer", at)
            q = tasks.get(ours).from_charbench(row, word, at, cfg, stratum)
            if q is None:
                skipped[f"{task} (character absent)"] += 1
                continue
            questions.append({"id": at.qid, "word": word, **q, "_line": reader.line_num})
    return questions, skipped, rows


def read_questions_file(cfg: Any) -> QuestionSet:
    """Parse, convert and verify ``cfg.questions_file`` (no overlap check: that needs the training words)."""
    path = Path(cfg.questions_file).expanduser()
    if not path.is_file():
        raise ConfigError(f"eval.questions_file={cfg.questions_file}: no such file")
    fmt = resolve_format(str(path), cfg.questions_format)
    try:
        reader = _read_jsonl if fmt == "jsonl" else _read_charbench
        questions, skipped, rows = reader(path, cfg)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"eval.questions_file={path}: unreadable ({type(e).__name__}: {e})") from None
    seen: dict[str, int] = {}
    for q in questions:
        if q["id"] in seen:
            raise ConfigError(f"eval.questions_file={path} line {q['_line']}: duplicate id {q['id']!r} "
                              f"(first on line {seen[q['id']]})")
        seen[q["id"]] = q.pop("_line")
        q["word_length"] = len(q["word"])
    if not questions:
        raise SizeError(f"eval.questions_file={path}: no questions to ask ({rows} row(s)"
                        + (f", skipped: {dict(skipped)}" if skipped else "") + ")")
    source = {"path": str(path), "format": fmt, "sha256": sha256_file(path), "rows": rows,
              "skipped": dict(sorted(skipped.items())), "n_skipped": sum(skipped.values()),
              "by_task": dict(Counter(q["task"] for q in questions))}
    return QuestionSet(questions, source)


def apply_overlap(qs: QuestionSet, training_words: Iterable[str], on_overlap: Any) -> QuestionSet:
    """Mark, drop or refuse questions whose word is a training word (lowercase match, as the hold-out)."""
    train = {w.lower() for w in training_words}
    overlapping = sorted({q["word"].lower() for q in qs.questions} & train)
    questions = [{**q, "training_word": q["word"].lower() in train} for q in qs.questions]
    n_overlap = sum(q["training_word"] for q in questions)
    mode = str(on_overlap)
    shown = ", ".join(overlapping[:10]) + (" ..." if len(overlapping) > 10 else "")
    if overlapping and mode == "error":
        raise HoldoutOverlapError(
            f"eval.questions_file={qs.source['path']}: {len(overlapping)} word(s) in {n_overlap} question(s) are "
            f"training words: {shown} (eval.on_overlap=drop removes those questions, keep evaluates them)")
    if mode == "drop":
        questions = [q for q in questions if not q["training_word"]]
        if not questions:
            raise SizeError(f"eval.questions_file={qs.source['path']}: every question's word is a training word "
                            f"({shown}); set eval.on_overlap=keep to evaluate them anyway")
    source = {**qs.source, "on_overlap": mode, "overlapping_words": len(overlapping),
              "overlapping_questions": n_overlap, "dropped": n_overlap if mode == "drop" else 0,
              "overlapping_examples": overlapping[:20], "questions": len(questions),
              "by_task": dict(Counter(q["task"] for q in questions))}
    return QuestionSet(questions, source)


def add_word_tokens(questions: list[dict[str, Any]], count_tokens: Callable[[list[str]], list[int]] | None) -> None:
    """``word_tokens`` as for hold-out words: the bare word under the model's tokenizer (None without one)."""
    counts = count_tokens([q["word"] for q in questions]) if count_tokens and questions else [None] * len(questions)
    for q, n in zip(questions, counts):
        q["word_tokens"] = n


def load_external_questions(cfg: Any, training_words: Iterable[str],
                            count_tokens: Callable[[list[str]], list[int]] | None = None) -> QuestionSet:
    """The evaluation's questions from ``cfg.questions_file``: parsed, verified, checked against training words."""
    qs = apply_overlap(read_questions_file(cfg), training_words, cfg.on_overlap)
    add_word_tokens(qs.questions, count_tokens)
    return qs


def source_counts(source: dict[str, Any]) -> dict[str, Any]:
    """The counts that identify what was kept (for metrics.json meta and the cache key): no path."""
    keys = ("format", "sha256", "rows", "questions", "by_task", "skipped", "n_skipped", "overlapping_words",
            "overlapping_questions", "dropped")
    return {k: source[k] for k in keys if k in source}


def summary_line(source: dict[str, Any]) -> str:
    s = source
    counts = ", ".join(f"{s['by_task'][t]} {t}" for t in tasks.ordered(s["by_task"]))
    overlap = (f"{s['dropped']} dropped (training words)" if s["on_overlap"] == "drop"
               else f"{s['overlapping_questions']} kept whose word is a training word "
                    f"({s['overlapping_words']} distinct)")
    return (f"questions: {s['questions']} from {s['path']} ({s['format']}, {s['rows']} rows): {counts}; "
            f"{s['n_skipped']} skipped (unsupported tasks); {overlap}")

