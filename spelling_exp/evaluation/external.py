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

from spelling_exp.data.examples import seeded_rng
from spelling_exp.errors import ConfigError, HoldoutOverlapError, SizeError
from spelling_exp.evaluation.questions import check_phrasings, count_stratum, ordinal
from spelling_exp.storage.io import sha256_file

TASKS = ("position", "count", "occurrence")
OCCURRENCE_STRATA = ("first", "last")
CHARBENCH_COLUMNS = ("question", "answer", "word", "character", "task")
# CharBench task -> (our task, stratum); any other CharBench task is skipped and counted.
CHARBENCH_TASKS = {"count_character_frequency": ("count", None),
                   "find_first_occurrence": ("occurrence", "first"),
                   "find_last_occurrence": ("occurrence", "last")}
EXTENSIONS = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "charbench"}


@dataclass
class QuestionSet:
    questions: list[dict[str, Any]]
    source: dict[str, Any]  # what questions_source.json records


class _Line:
    """Error messages that name the file and line (and the question id once known)."""

    def __init__(self, path: Path, line: int):
        self.where = f"eval.questions_file={path} line {line}"
        self.qid: str | None = None

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.where}" + (f" (id {self.qid!r})" if self.qid is not None else "") + f": {message}")


def resolve_format(path: str, fmt: Any) -> str:
    """The file's format: ``eval.questions_format``, or by extension when it is ``auto``."""
    if str(fmt) != "auto":
        return str(fmt)
    found = EXTENSIONS.get(Path(path).suffix.lower())
    if not found:
        raise ConfigError(f"eval.questions_file={path}: cannot tell its format by the extension "
                          f"({', '.join(EXTENSIONS)}); set eval.questions_format=jsonl or charbench")
    return found


def _int(value: Any, field: str, at: _Line) -> int:
    if isinstance(value, bool):
        raise at.error(f"field '{field}' must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise at.error(f"field '{field}' must be an integer, got {value!r}")


def _text(row: dict[str, Any], field: str, at: _Line) -> str:
    value = row.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise at.error(f"missing field '{field}'")
    if not isinstance(value, str):
        raise at.error(f"field '{field}' must be a string, got {value!r}")
    return value


def _letter(row: dict[str, Any], field: str, at: _Line) -> str:
    value = _text(row, field, at)
    if len(value) != 1:
        raise at.error(f"field '{field}' must be one character, got {value!r}")
    return value


def _wrong(at: _Line, answer: Any, truth: Any, what: str) -> ConfigError:
    return at.error(f"answer {answer!r} is wrong: {what} is {truth!r}")


def _phrase(key: str, qid: str, cfg: Any, **values: Any) -> tuple[str, str]:
    """Our wording for a question without its own prompt: a seeded draw per question id."""
    check_phrasings(cfg, {key})
    rng = seeded_rng(cfg.seed, f"external:{qid}")
    p = rng.randrange(len(cfg.phrasings[key]))
    return cfg.phrasings[key][p].format(**values), f"{key}/{p}"


def _position(row: dict[str, Any], word: str, at: _Line, cfg: Any) -> dict[str, Any]:
    if "k" not in row or row["k"] is None:
        raise at.error("missing field 'k'")
    k = _int(row["k"], "k", at)
    if not 1 <= k <= len(word):
        raise at.error(f"field 'k'={k} is outside the word {word!r} (1..{len(word)})")
    answer = row["answer"]
    if not isinstance(answer, str) or len(answer) != 1:
        raise at.error(f"field 'answer' must be one letter for a position question, got {answer!r}")
    if answer.lower() != word[k - 1].lower():
        raise _wrong(at, answer, word[k - 1], f"letter {k} of {word!r}")
    stratum = row.get("stratum") or ("first" if k == 1 else "last" if k == len(word) else "middle")
    as_last = row.get("asked_as_last", False)
    if not isinstance(as_last, bool):
        raise at.error(f"field 'asked_as_last' must be true or false, got {as_last!r}")
    if row.get("prompt") is not None:
        prompt, phrasing = _text(row, "prompt", at), "file"
    else:
        rng = seeded_rng(cfg.seed, f"external-last:{at.qid}")
        as_last = k == len(word) and rng.random() < cfg.last_as_word
        key = "position_last" if as_last else "position"
        prompt, phrasing = _phrase(key, at.qid, cfg, word=word, ordinal=ordinal(k), k=k)
    return {"task": "position", "stratum": str(stratum), "k": k, "asked_as_last": as_last, "phrasing": phrasing,
            "prompt": prompt, "answer": word[k - 1].lower()}


def _count(row: dict[str, Any], word: str, at: _Line, cfg: Any, prompt_field: str = "prompt",
           letter_field: str = "letter") -> dict[str, Any]:
    letter = _letter(row, letter_field, at)
    answer = _int(row["answer"], "answer", at)
    if answer != word.count(letter):
        raise _wrong(at, row["answer"], word.count(letter), f"the count of {letter!r} in {word!r}")
    if row.get(prompt_field) is not None:
        prompt, phrasing = _text(row, prompt_field, at), "file"
    else:
        prompt, phrasing = _phrase("count", at.qid, cfg, word=word, letter=letter)
    return {"task": "count", "stratum": str(row.get("stratum") or count_stratum(answer)), "letter": letter,
            "phrasing": phrasing, "prompt": prompt, "answer": str(answer)}


def _occurrence(row: dict[str, Any], word: str, at: _Line, stratum: str, index_base: int, prompt: str,
                letter: str) -> dict[str, Any]:
    answer = _int(row["answer"], "answer", at)
    if letter not in word:
        raise at.error(f"answer {row['answer']!r} is wrong: {letter!r} does not occur in {word!r}")
    index = word.index(letter) if stratum == "first" else word.rindex(letter)
    if answer != index + index_base:
        raise _wrong(at, row["answer"], index + index_base,
                     f"the {index_base}-based index of the {stratum} {letter!r} in {word!r}")
    return {"task": "occurrence", "stratum": stratum, "letter": letter, "k": index + 1, "index_base": index_base,
            "phrasing": "file", "prompt": prompt, "answer": str(answer)}


def _jsonl_question(row: dict[str, Any], at: _Line, cfg: Any) -> dict[str, Any]:
    if "id" not in row or row["id"] is None or (isinstance(row["id"], str) and not row["id"].strip()):
        raise at.error("missing field 'id'")
    if isinstance(row["id"], bool) or not isinstance(row["id"], (str, int)):
        raise at.error(f"field 'id' must be a string or an integer, got {row['id']!r}")
    at.qid = str(row["id"])
    task = _text(row, "task", at)
    if task not in TASKS:
        raise at.error(f"field 'task'={task!r} is not one of {', '.join(TASKS)}")
    word = _text(row, "word", at)
    if row.get("answer") is None or row.get("answer") == "":
        raise at.error("missing field 'answer'")
    if task == "position":
        return _position(row, word, at, cfg)
    if task == "count":
        return _count(row, word, at, cfg)
    stratum = _text(row, "stratum", at)
    if stratum not in OCCURRENCE_STRATA:
        raise at.error(f"field 'stratum'={stratum!r} of an occurrence question must be first or last")
    if row.get("index_base") is None:
        raise at.error("missing field 'index_base' (0 or 1: how the prompt counts positions)")
    index_base = _int(row["index_base"], "index_base", at)
    if index_base not in (0, 1):
        raise at.error(f"field 'index_base'={index_base} must be 0 or 1")
    return _occurrence(row, word, at, stratum, index_base, _text(row, "prompt", at), _letter(row, "letter", at))


def _read_jsonl(path: Path, cfg: Any) -> tuple[list[dict[str, Any]], Counter, int]:
    questions, rows = [], 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        rows += 1
        at = _Line(path, n)
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
            at = _Line(path, reader.line_num)
            task = _text(row, "task", at).strip()
            if task not in CHARBENCH_TASKS:
                skipped[task] += 1
                continue
            at.qid = (row.get("id") or "").strip() or f"charbench-{i:05d}"
            ours, stratum = CHARBENCH_TASKS[task]
            word = _text(row, "word", at)
            _text(row, "answer", at)
            if ours == "count":
                q = _count(row, word, at, cfg, prompt_field="question", letter_field="character")
                q["phrasing"] = "charbench"
            else:
                letter = _letter(row, "character", at)
                if letter not in word and _int(row["answer"], "answer", at) == -1:
                    skipped[f"{task} (character absent)"] += 1
                    continue
                q = _occurrence(row, word, at, stratum, 0, _text(row, "question", at), letter)
                q["phrasing"] = "charbench"
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
    tasks = ", ".join(f"{n} {t}" for t, n in sorted(s["by_task"].items(), key=lambda kv: TASKS.index(kv[0])))
    overlap = (f"{s['dropped']} dropped (training words)" if s["on_overlap"] == "drop"
               else f"{s['overlapping_questions']} kept whose word is a training word "
                    f"({s['overlapping_words']} distinct)")
    return (f"questions: {s['questions']} from {s['path']} ({s['format']}, {s['rows']} rows): {tasks}; "
            f"{s['n_skipped']} skipped (unsupported tasks); {overlap}")

