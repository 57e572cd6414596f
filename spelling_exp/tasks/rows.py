"""Reading one row of an external question file: typed fields and errors that name the line.

evaluation/external.py reads the file and hands each row to its task (``Task.from_jsonl`` /
``Task.from_charbench``); these helpers are what those methods use, so every task's messages
name the file, the line and the question id the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from spelling_exp.data.examples import seeded_rng
from spelling_exp.errors import ConfigError
from spelling_exp.tasks.base import check_phrasings


class RowContext:
    """Where a row stands (file, line, question id once known), for error messages."""

    def __init__(self, path: Path, line: int):
        self.where = f"eval.questions_file={path} line {line}"
        self.qid: str | None = None

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.where}" + (f" (id {self.qid!r})" if self.qid is not None else "") + f": {message}")


def read_int(value: Any, field: str, at: RowContext) -> int:
    if isinstance(value, bool):
        raise at.error(f"field '{field}' must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise at.error(f"field '{field}' must be an integer, got {value!r}")


def read_text(row: dict[str, Any], field: str, at: RowContext) -> str:
    value = row.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise at.error(f"missing field '{field}'")
    if not isinstance(value, str):
        raise at.error(f"field '{field}' must be a string, got {value!r}")
    return value


def read_letter(row: dict[str, Any], field: str, at: RowContext) -> str:
    value = read_text(row, field, at)
    if len(value) != 1:
        raise at.error(f"field '{field}' must be one character, got {value!r}")
    return value


def wrong_answer(at: RowContext, answer: Any, truth: Any, what: str) -> ConfigError:
    return at.error(f"answer {answer!r} is wrong: {what} is {truth!r}")


def phrase_external(key: str, qid: str, cfg: Any, placeholders: dict[str, frozenset[str]],
                    **values: Any) -> tuple[str, str]:
    """Our wording for a file's question without its own prompt: a seeded draw per question id."""
    check_phrasings(cfg, {key}, placeholders)
    rng = seeded_rng(cfg.seed, f"external:{qid}")
    p = rng.randrange(len(cfg.phrasings[key]))
    return cfg.phrasings[key][p].format(**values), f"{key}/{p}"
