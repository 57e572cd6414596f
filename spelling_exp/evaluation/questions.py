"""Question sets built from hold-out words: ``eval.n_questions`` per task in ``eval.tasks``.

Each task builds its own questions (spelling_exp/tasks/): deterministic per seed, strata
allocated exactly over the configured weights, every field needed to audit a question saved
(the word, k or letter, the stratum, the true answer, word length and tokens, and the word's
contamination label when the hold-out rows carry one). This module checks the evaluation
settings and numbers the questions.
"""
from __future__ import annotations

from typing import Any

from spelling_exp import tasks
from spelling_exp.errors import ConfigError, SizeError, require
from spelling_exp.tasks.records import Question


def validate_eval_config(cfg: Any) -> None:
    """Checks the schema cannot express: the task names, each task's own settings, sizes, sampling."""
    if not cfg.tasks:
        raise ConfigError(f"eval.tasks: no tasks given (known: {', '.join(tasks.names())})")
    for name in tasks.ordered(cfg.tasks, key="eval.tasks"):
        task = tasks.get(name)
        if not cfg.questions_file and not task.generated:
            raise ConfigError(f"eval.tasks: '{name}' questions are not generated; they come only from an "
                              "external question set (eval.questions_file)")
        task.check(cfg)
    if cfg.sampling.greedy and cfg.n_samples > 1:
        raise ConfigError("eval.n_samples > 1 with greedy decoding gives identical samples; use eval.n_samples=1")
    for key in ("n_questions", "n_samples", "batch_size", "max_new_tokens"):
        require(getattr(cfg, key) >= 1, f"eval.{key}", getattr(cfg, key), ">= 1")
    s = cfg.sampling
    if not s.greedy:
        require(s.temperature > 0, "eval.sampling.temperature", s.temperature, "> 0 (or eval/sampling=greedy)")
        require(0 < s.top_p <= 1, "eval.sampling.top_p", s.top_p, "in (0, 1]")
        require(s.top_k >= 0, "eval.sampling.top_k", s.top_k, ">= 0 (0: no top-k cut)")
        require(0 <= s.min_p < 1, "eval.sampling.min_p", s.min_p, "in [0, 1)")


def build_questions(holdout_rows: list[dict[str, Any]], cfg: Any) -> list[Question]:
    """``cfg.n_questions`` questions per task in ``cfg.tasks`` (in that order) over the hold-out rows."""
    validate_eval_config(cfg)
    if not holdout_rows:
        raise SizeError("no hold-out words to ask about")
    rows = sorted(holdout_rows, key=lambda r: r["word"])
    out: list[Question] = []
    for name in cfg.tasks:
        out += [{"id": f"{name}-{i:05d}", **q} for i, q in enumerate(tasks.get(name).build(rows, cfg))]
    return out
