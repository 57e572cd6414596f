"""The data recipe: tokens -> spelling examples -> hold-out words.

Reads top to bottom. Output files (in a cache entry keyed by the data, template and model
identity, which the data stage publishes into ``<run_dir>/data``):

  english_tokens.json        {"tokens": [...], "tokenizer", "rule", "counts"}
  examples_train.jsonl       one spelling example per line (word, category, style,
  examples_val.jsonl         separator, template_id, user, assistant, n_tokens)
  holdout_validation.jsonl   {"word", "n_tokens", "contamination", "contamination_match",
  holdout_test.jsonl          "contamination_rule"} per line, disjoint from training words
  manifest.json              counts (contamination labels per split too), hashes of every
                             file and of the word lists
  build_info.json            timings (kept apart so the files above are byte-deterministic)
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spelling_exp.config import DataConfig, HoldoutSource, ModelConfig, TemplateConfig
from spelling_exp.data.contamination import describe_rules, direction_counts, label_counts, validate_exclude
from spelling_exp.data.english_tokens import describe_rule
from spelling_exp.data.examples import generate_examples, split_training_words
from spelling_exp.data.holdout import build_holdout, load_source_words, read_word_file
from spelling_exp.data.templates import load_templates, mix_cells
from spelling_exp.errors import ConfigError
from spelling_exp.model.chat import build_messages, render_chat
from spelling_exp.storage.cache import ArtifactCache, cache_key
from spelling_exp.storage.io import atomic_write_json, atomic_write_jsonl, read_json, sha256_file, words_sha256

log = logging.getLogger(__name__)
# 2: batching statistics moved to training; model identity in the key
# 3: hold-out rows carry a contamination label (data/contamination.py), counted in the manifest
# 4: the control arms (shuffled, random) match each example's token count to its real counterpart
DATA_FORMAT_VERSION = 4


@dataclass
class DataArtifacts:
    dir: Path
    cache_hit: bool
    manifest: dict[str, Any]
    key: str  # the cache key: identifies these exact files (the training cache key builds on it)

    def file(self, name: str) -> Path:
        return self.dir / name


def data_cache_payload(data: DataConfig, template: TemplateConfig, model: ModelConfig) -> dict[str, Any]:
    """Everything that determines the data files' bytes: the tokenizer and chat template come
    from the model identity (token lengths are measured on the rendered example)."""
    payload = {"format": DATA_FORMAT_VERSION, "model": model.identity(), "data": asdict(data),
               "template": asdict(template)}
    if data.examples.seed is None:  # unset: the key (and every cached entry) stays as before the option
        del payload["data"]["examples"]["seed"]
    if data.holdout.source == HoldoutSource.file:  # the file's content, not just its name
        payload["holdout_file_sha256"] = words_sha256(read_word_file(data.holdout.path))
    return payload


def validate_data_config(data: DataConfig, template: TemplateConfig) -> None:
    """Cheap checks that need no tokenizer, run before anything is built or written."""
    mix_cells(template, load_templates(template))
    h, e = data.holdout, data.examples
    if h.source == HoldoutSource.file and not h.path:
        raise ConfigError("data.holdout.source=file needs data.holdout.path")
    # The file itself is read (and a missing / empty / unreadable one refused) once, by
    # data_cache_payload, which hashes its content into the cache key right after this.
    for name, value in (("examples.n_train", e.n_train), ("examples.n_val", e.n_val),
                        ("holdout.n_validation", h.n_validation), ("holdout.n_test", h.n_test)):
        if value < 0:
            raise ConfigError(f"data.{name} must be >= 0, got {value}")
    if h.min_length > h.max_length:
        raise ConfigError(f"data.holdout.min_length ({h.min_length}) > max_length ({h.max_length})")
    validate_exclude(h.exclude)


def add_token_lengths(examples: list[dict[str, Any]], tokenizer: Any, model_cfg: Any) -> None:
    """n_tokens = tokens of the full chat-formatted example, as the trainer will see it.

    The chat template's overhead is constant per model, so we render one example through it
    and add that overhead to batched token counts of user and answer text (fast, in Rust).
    """
    if not examples:
        return
    first = examples[0]
    rendered = render_chat(tokenizer, build_messages(first["user"], model_cfg.system_prompt, first["assistant"]),
                           model_cfg.family, add_generation_prompt=False,
                           template_kwargs=model_cfg.chat_template_kwargs)
    enc = tokenizer([r["user"] for r in examples] + [r["assistant"] for r in examples],
                    add_special_tokens=False)["input_ids"]
    n = len(examples)
    overhead = len(tokenizer(rendered, add_special_tokens=False)["input_ids"]) - len(enc[0]) - len(enc[n])
    for i, row in enumerate(examples):
        row["n_tokens"] = len(enc[i]) + len(enc[n + i]) + overhead


def build_data(data: DataConfig, template: TemplateConfig, model: ModelConfig, cache_dir: str,
               out: Path) -> dict[str, Any]:
    from spelling_exp.data.english_tokens import extract_english_tokens
    from spelling_exp.model.tokenizer import load_tokenizer, tokenizer_id

    d, seed, timings = data, data.seed, {}
    t0 = time.perf_counter()

    # 1. English tokens from the tokenizer (no weights are loaded)
    tok = load_tokenizer(model, cache_dir=cache_dir)
    timings["tokenizer_load_s"] = time.perf_counter() - t0
    words, token_counts = extract_english_tokens(tok, d.tokens)
    atomic_write_json(out / "english_tokens.json", {
        "tokens": words, "tokenizer": tokenizer_id(tok), "rule": describe_rule(d.tokens), "counts": token_counts,
    })
    log.info("english tokens: %d unique words from %d regular tokens", len(words), token_counts["regular_tokens"])
    timings["tokens_s"] = time.perf_counter() - t0

    # 2. Spelling examples from the template mix; validation words disjoint from train words
    templates = load_templates(template)
    cells = mix_cells(template, templates)
    train_words, val_words = split_training_words(words, min(d.examples.n_val, len(words) // 2), seed)
    seps = dict(template.separators)
    spellings = str(d.examples.spellings)
    examples_seed = seed if d.examples.seed is None else d.examples.seed

    def count_tokens(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]

    train = generate_examples(train_words, templates, cells, seps, d.examples.n_train, examples_seed, "train",
                              d.examples.reuse_words, spellings, count_tokens)
    val = generate_examples(val_words, templates, cells, seps, d.examples.n_val, examples_seed, "val",
                            d.examples.reuse_words, spellings, count_tokens)
    add_token_lengths(train + val, tok, model)
    atomic_write_jsonl(out / "examples_train.jsonl", train)
    atomic_write_jsonl(out / "examples_val.jsonl", val)
    timings["examples_s"] = time.perf_counter() - t0

    # 3. Hold-out words from an external list, disjoint from every extracted token and labelled
    #    by their closeness to the words that have training examples
    raw, source = load_source_words(d.holdout)
    trained = sorted({r["word"].lower() for r in train})
    if d.examples.seed is not None:
        # the words drawn depend on the examples seed; the hold-out must not: label against the pool
        trained = sorted({w.lower() for w in train_words})
    splits, holdout_counts = build_holdout(raw, words, tok, d.holdout, seed, trained_words=trained)
    for name, rows in splits.items():
        atomic_write_jsonl(out / f"holdout_{name}.jsonl", rows)
    timings["holdout_s"] = time.perf_counter() - t0

    holdout_words = [r["word"] for rows in splits.values() for r in rows]
    manifest = {
        "format": DATA_FORMAT_VERSION,
        "tokenizer": tokenizer_id(tok),
        "token_rule": describe_rule(d.tokens),
        "counts": {
            "english_tokens": len(words),
            "train_examples": len(train),
            "val_examples": len(val),
            "holdout_validation": len(splits["validation"]),
            "holdout_test": len(splits["test"]),
            **{f"holdout_{k}": v for k, v in holdout_counts.items()},
        },
        "holdout_source": source,
        "contamination": {
            "rules": describe_rules(), "trained_words": len(trained), "exclude": list(d.holdout.exclude),
            **{name: label_counts(rows) for name, rows in splits.items()},
            "directions": {name: direction_counts(rows) for name, rows in splits.items()},
        },
        "hashes": {
            "training_words_sha256": words_sha256(words),
            "trained_words_sha256": words_sha256(trained),
            "holdout_words_sha256": words_sha256(holdout_words),
            "holdout_validation_sha256": words_sha256(r["word"] for r in splits["validation"]),
            "holdout_test_sha256": words_sha256(r["word"] for r in splits["test"]),
        },
        "disjoint": {"checked": True, "overlap": 0, "against": "all english tokens (superset of example words)"},
        "files": {p.name: sha256_file(p) for p in sorted(out.glob("*.json*"))},
    }
    atomic_write_json(out / "manifest.json", manifest)
    atomic_write_json(out / "build_info.json", {"timings_s": {k: round(v, 3) for k, v in timings.items()}})
    return manifest


def prepare_data(data: DataConfig, template: TemplateConfig, model: ModelConfig, cache_dir: str) -> DataArtifacts:
    """The data artifacts: from the cache when present, else built once (under the key's lock)."""
    validate_data_config(data, template)
    payload = data_cache_payload(data, template, model)
    key = cache_key(payload)
    entry, hit = ArtifactCache(cache_dir, "data").get_or_build(
        key, payload, lambda tmp: build_data(data, template, model, cache_dir, tmp))
    return DataArtifacts(entry, hit, read_json(entry / "manifest.json"), key)
