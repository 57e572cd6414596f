"""The evaluation recipe: hold-out words -> questions -> replies -> parsed answers -> metrics.

The questions are generated from the hold-out words (evaluation/questions.py), or read from
``eval.questions_file`` (evaluation/external.py); everything after that is the same.

The recipe never loads a model: a backend (``evaluation/backends``), built from the model
config and an optional adapter, renders the prompts and generates the replies.

Resumable and atomic. Prompts are cut into a fixed batch plan (sorted by prompt length, so
padding is small); every batch has its own seed derived from the eval seed and its index.
Replies stream to ``predictions.jsonl`` batch by batch; a rerun keeps the complete batches,
drops a partial one, and runs only what is missing, so it ends with exactly the replies an
uninterrupted run would have produced. A finished evaluation is also stored in the cache under
a key of everything that determines it (model, adapter, questions, sampling, batch plan), so
e.g. every job of a LoRA-rank sweep reuses one base-model evaluation.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spelling_exp import tasks
from spelling_exp.config import EvalConfig, ModelConfig
from spelling_exp.errors import ConfigError
from spelling_exp.evaluation import forced_choice
from spelling_exp.evaluation.external import load_external_questions, source_counts, summary_line
from spelling_exp.evaluation.metrics import compute_metrics, metrics_table
from spelling_exp.evaluation.questions import build_questions, validate_eval_config
from spelling_exp.model.adapter import adapter_fingerprint
from spelling_exp.storage.cache import ArtifactCache, cache_key
from spelling_exp.storage.io import (
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    canonical_json,
    iter_jsonl,
    read_json,
    sha256_text,
)
from spelling_exp.tasks.records import Question, Reading

log = logging.getLogger(__name__)
# bump when parsing or scoring changes: invalidates cached evaluations (3: forced-choice scores)
EVAL_FORMAT_VERSION = 3
EVAL_FILES = ("questions.jsonl", "predictions.jsonl", "metrics.json", "metrics.md")


@dataclass
class EvalResult:
    dir: Path
    metrics: dict[str, Any]
    cache_hit: bool


def score(q: Question, reply: str) -> Reading:
    """The reply read the way its task reads it, and scored against the question's answer."""
    p = tasks.get(q["task"]).score(q, reply)
    return {"parsed": p.value, "lenient": p.lenient, "spelled": p.spelled, "ambiguous": p.ambiguous,
            "correct": p.value == q["answer"], "lenient_correct": p.lenient == q["answer"]}


def plan_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Question indices grouped by prompt length; depends only on the questions and batch size."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def eval_payload(eval_cfg: EvalConfig, model: ModelConfig, questions_sha: str, adapter: str | None,
                 questions_source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything that determines an evaluation's replies: its cache key, and (less the adapter)
    the identity two evaluations must share to be compared. ``questions_source``: the counts of an
    external question set (evaluation/external.py), whose questions have no hold-out split."""
    from spelling_exp.evaluation.backends import backend_settings, served_model

    e = eval_cfg
    generation = {"backend": str(e.backend), "sampling": asdict(e.sampling), "n_samples": e.n_samples,
                  "batch_size": e.batch_size, "max_new_tokens": e.max_new_tokens, "seed": e.seed}
    if settings := backend_settings(e):  # only for server backends: hf keys stay as they were
        generation["backend_settings"] = settings
    if adapter:
        generation["merge_adapter"] = e.merge_adapter
    payload = {
        "format": EVAL_FORMAT_VERSION,
        "model": model.identity(),
        "adapter": adapter_fingerprint(adapter),
        "questions_sha256": questions_sha,
        "split": str(e.split) if questions_source is None else "external",
        "generation": generation,
        "forced_choice": e.forced_choice,
    }
    if questions_source is not None:
        payload["questions_source"] = questions_source
    if (served := served_model(e, adapter)) is not None:  # like the adapter: what base and adapter differ in
        payload["served_model"] = served
    return payload


PREDICTION_FIELDS = ("id", "sample", "batch", "reply", "truncated", "parsed", "lenient", "spelled", "ambiguous",
                     "correct", "lenient_correct")


def _load_complete_batches(pred_path: Path, batches: list[list[int]], questions: list[dict[str, Any]],
                           n_samples: int) -> list[dict[str, Any]]:
    """Rows of fully finished batches from a previous (possibly killed) run; the file is rewritten to them.

    A batch is kept only when its rows are exactly its questions x samples. A line cut off by a
    kill is expected; a line that is not JSON or a row missing a field is damage: it is dropped
    with a warning and its batch is redone, never a crash.
    """
    if not pred_path.exists():
        return []
    expected = {b: {(questions[i]["id"], s) for i in idx for s in range(n_samples)} for b, idx in enumerate(batches)}
    raw = pred_path.read_bytes()
    lines = raw.split(b"\n")
    if lines and lines[-1]:
        lines.pop()  # cut off mid-write by a kill: not damage, just unfinished
    by_batch: dict[int, list[dict[str, Any]]] = {}
    n_rows = damaged = 0
    for line in filter(bytes.strip, lines):
        n_rows += 1
        try:
            row = json.loads(line)
        except ValueError:
            damaged += 1
            continue
        if not isinstance(row, dict) or any(f not in row for f in PREDICTION_FIELDS) or type(row["batch"]) is not int:
            damaged += 1
            continue
        by_batch.setdefault(row["batch"], []).append(row)
    keep = [r for b, rows in sorted(by_batch.items())
            if len(rows) == len(expected.get(b, ())) and {(r["id"], r["sample"]) for r in rows} == expected[b]
            for r in rows]
    if damaged:
        log.warning("%s: dropped %d damaged line(s); the batches they belonged to will be redone", pred_path, damaged)
    if len(keep) != n_rows or not raw.endswith(b"\n"):
        atomic_write_jsonl(pred_path, keep)
    return keep


LOOKAHEAD = 2  # batches queued beyond the one being collected (server backends)


def _replies_in_order(backend: Any, prompts: list[str], batches: list[list[int]], pending: list[int],
                      seed: int) -> Iterator[tuple[int, list[Any]]]:
    """(batch, replies) for each pending batch, in order; every batch has its own seed.

    A backend that can ``submit`` without waiting (a server) gets the next LOOKAHEAD batches'
    requests while one batch is collected, so its slots stay busy across batch boundaries.
    """
    def args(b: int) -> tuple[list[str], int]:
        return [prompts[i] for i in batches[b]], seed * 1_000_003 + b

    if not hasattr(backend, "submit"):
        for b in pending:
            yield b, backend.generate(*args(b))
        return
    queue: deque[tuple[int, Any]] = deque()
    todo = iter(pending)
    for b in itertools.islice(todo, LOOKAHEAD + 1):
        queue.append((b, backend.submit(*args(b))))
    while queue:
        b, handle = queue.popleft()
        replies = backend.collect(handle)
        if (nxt := next(todo, None)) is not None:
            queue.append((nxt, backend.submit(*args(nxt))))
        yield b, replies


def run_predictions(eval_cfg: EvalConfig, backend: Any, out: Path, questions: list[dict[str, Any]],
                    key: str) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    e = eval_cfg
    prompts = backend.render([q["prompt"] for q in questions])
    batches = plan_batches(backend.prompt_lengths(prompts), e.batch_size)

    pred_path, state_path = out / "predictions.jsonl", out / "eval_state.json"
    same_run = state_path.exists() and read_json(state_path).get("key") == key
    if not same_run and pred_path.exists():
        pred_path.unlink()  # predictions of a different evaluation: never mix them
    atomic_write_json(state_path, {"key": key, "batches": len(batches)})
    rows = _load_complete_batches(pred_path, batches, questions, e.n_samples)
    done = {r["batch"] for r in rows}
    pending = [b for b in range(len(batches)) if b not in done]
    if done:
        log.info("resuming: %d of %d batches already done", len(done), len(batches))
    if not pending:
        return rows

    t0, n_done = time.perf_counter(), 0
    # The bar closes even when a signal interrupts generation, so the last line on the terminal
    # is the CLI's message, not a progress bar redrawn at exit.
    with tqdm(total=len(questions), initial=sum(len(batches[b]) for b in done), unit="q",
              desc=f"eval {out.name}", dynamic_ncols=True) as bar, open(pred_path, "a", encoding="utf-8") as f:
        for b, replies in _replies_in_order(backend, prompts, batches, pending, e.seed):
            idx = batches[b]
            new = []
            for i, samples in zip(idx, replies):
                for s, reply in enumerate(samples):
                    new.append({"id": questions[i]["id"], "sample": s, "batch": b, "reply": reply.text,
                                "truncated": reply.truncated, **score(questions[i], reply.text),
                                "prompt_rendered": prompts[i]})
            f.write("".join(canonical_json(r) + "\n" for r in new))
            f.flush()
            os.fsync(f.fileno())
            rows.extend(new)
            n_done += len(idx)
            bar.update(len(idx))
            bar.set_postfix(q_per_s=f"{n_done / (time.perf_counter() - t0):.2f}")
    return rows


def _external_questions(eval_cfg: EvalConfig, model: ModelConfig, cache_dir: str,
                        training_words: Path | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``eval.questions_file``'s questions, checked against the training words, with tokens per word."""
    from spelling_exp.model.tokenizer import load_tokenizer

    if training_words is None:
        raise ConfigError("eval.questions_file: no training words to check the file's words against")

    def count_tokens(words: list[str]) -> list[int]:
        tok = load_tokenizer(model, cache_dir)  # cached; no weights
        return [len(ids) for ids in tok(words, add_special_tokens=False)["input_ids"]]

    qs = load_external_questions(eval_cfg, read_json(training_words)["tokens"], count_tokens)
    return qs.questions, qs.source


def evaluate(eval_cfg: EvalConfig, model: ModelConfig, holdout_path: Path, out: Path, cache_dir: str,
             adapter: str | None = None, title: str = "", training_words: Path | None = None) -> EvalResult:
    """Evaluate ``model`` (+ ``adapter``) on questions built from the hold-out words in ``holdout_path``,
    or on ``eval.questions_file`` (checked against the training words in ``training_words``, the
    data stage's english_tokens.json)."""
    from spelling_exp.evaluation.backends import make_backend

    validate_eval_config(eval_cfg)
    source = None
    if eval_cfg.questions_file:
        questions, source = _external_questions(eval_cfg, model, cache_dir, training_words)
    else:
        questions = build_questions(list(iter_jsonl(holdout_path)), eval_cfg)
    q_sha = sha256_text("".join(canonical_json(q) + "\n" for q in questions))
    payload = eval_payload(eval_cfg, model, q_sha, adapter, source_counts(source) if source else None)
    key = cache_key(payload)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_jsonl(out / "questions.jsonl", questions)
    if source is not None:  # outside the cache entry: it names this run's file path
        atomic_write_json(out / "questions_source.json", source)
        print(summary_line(source))

    def evaluate_into_out() -> None:
        (out / forced_choice.FILE).unlink(missing_ok=True)  # never another evaluation's scores
        backend = make_backend(eval_cfg, model, adapter, cache_dir, work_dir=out)
        choice_rows = None
        try:
            predictions = run_predictions(eval_cfg, backend, out, questions, key)
            if eval_cfg.forced_choice and forced_choice.supported(backend):
                choice_rows = forced_choice.score_questions(backend, backend.render([q["prompt"] for q in questions]),
                                                            questions)
            elif eval_cfg.forced_choice:
                log.info("forced-choice scoring: the %s backend cannot score candidate answers; generation only",
                         eval_cfg.backend)
        finally:  # a server the backend started stops here, also on errors and signals
            backend.close()
        metrics = compute_metrics(questions, predictions)
        if choice_rows is not None:
            atomic_write_jsonl(out / forced_choice.FILE, choice_rows)
            metrics["forced_choice"] = forced_choice.metrics(questions, choice_rows, predictions)
        metrics["meta"] = {"key": key, "model": model.name, "adapter": adapter, "split": payload["split"],
                           "sampling": asdict(eval_cfg.sampling), "n_samples": eval_cfg.n_samples,
                           "identity": payload}
        if source is not None:
            metrics["meta"]["questions_source"] = source_counts(source)
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_text(out / "metrics.md", metrics_table(metrics, title or out.name))

    hit = False
    try:
        if eval_cfg.use_cache:
            # The whole evaluation runs under the cache's per-key lock: jobs of a sweep that need the
            # same (base) evaluation compute it once, the others wait and reuse it.
            hit = ArtifactCache(cache_dir, "eval").compute_in_place(key, payload, out, evaluate_into_out, EVAL_FILES,
                                                                    optional=(forced_choice.FILE,))
            if hit:
                log.info("evaluation %s reused from cache (%s)", out.name, key)
        else:
            evaluate_into_out()
    except BaseException:
        # failed before a single reply (a server that is not there): leave no empty evaluation dir behind;
        # with replies written, the dir stays, and a rerun resumes from them
        pred = out / "predictions.jsonl"
        if created and (not pred.is_file() or pred.stat().st_size == 0):
            shutil.rmtree(out, ignore_errors=True)
        raise
    metrics = read_json(out / "metrics.json")
    print(metrics_table(metrics, title or out.name))
    return EvalResult(out, metrics, hit)
