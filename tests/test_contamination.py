"""Contamination labels of hold-out words (data/contamination.py), the `exclude` filter, and the
labels carried into questions and metrics. No model, no tokenizer: hand-made word lists."""
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import make_config

from spelling_exp.config import HoldoutConfig
from spelling_exp.data.build import data_cache_payload, validate_data_config
from spelling_exp.data.contamination import ContaminationIndex, direction_counts, inflections, label_counts
from spelling_exp.data.holdout import build_holdout
from spelling_exp.errors import ConfigError, SizeError
from spelling_exp.evaluation.metrics import compute_metrics
from spelling_exp.evaluation.questions import build_questions
from spelling_exp.storage.cache import cache_key

WORDS = (Path(__file__).parent / "data" / "quickstart_holdout_words.txt").read_text().split()


def _label(trained, word):
    return ContaminationIndex(trained).label(word)


@pytest.mark.parametrize(("trained", "word", "match", "rule"), [
    (["detailed"], "tailed", "detailed", "tailed in detailed"),  # hold-out word inside a trained word
    (["applying"], "plying", "applying", "plying in applying"),
    (["house"], "greenhouse", "house", "house in greenhouse"),  # trained word inside the hold-out word
    (["pelican", "house", "enhouse"], "greenhouse", "enhouse", "enhouse in greenhouse"),  # the longest inside wins
])
def test_substring_both_directions(trained, word, match, rule):
    assert _label(trained, word) == {"contamination": "substring", "contamination_match": match,
                                     "contamination_rule": rule}


@pytest.mark.parametrize(("trained", "word", "rule"), [
    (["sweet"], "sweetly", "sweet+ly"),
    (["gill"], "gilled", "gill+ed"),
    (["gill"], "gills", "gill+s"),
    (["stop"], "stopped", "stop+ed (double p)"),
    (["bake"], "baking", "bake+ing (drop e)"),
    (["bake"], "baked", "bake+ed (drop e)"),
    (["happy"], "happiness", "happy+ness (y->i)"),
    (["carry"], "carried", "carry+ed (y->i)"),
    (["gentle"], "gently", "gentle+ly (le->ly)"),
    (["box"], "boxes", "box+es"),
    (["sweetly"], "sweet", "sweet+ly"),  # the reverse: the trained word inflects the hold-out word
    (["hopeless"], "hope", "hope+less"),
])
def test_inflections(trained, word, rule):
    assert _label(trained, word) == {"contamination": "inflection", "contamination_match": trained[0],
                                     "contamination_rule": rule}


def test_a_trained_word_around_the_holdout_word_is_the_recorded_match():
    # "ailed" (trained) is inside "tailed", but "detailed" holds every letter of it: that one is named.
    assert _label(["ailed", "detailed", "retailed"], "tailed")["contamination_rule"] == "tailed in detailed"


def test_inflection_is_checked_before_substring():
    # "sweet" (5 letters) is also inside "sweetly": the more specific label wins.
    assert _label(["sweet", "detail"], "sweetly")["contamination"] == "inflection"
    assert _label(["sweet", "detail"], "detailing")["contamination"] == "inflection"


def test_clean_words_and_short_training_words():
    trained = ["tail", "ing", "tion", "ply", "detailed", "pelican"]
    for word in ("retailer", "nationwide", "marmalade", "strawberry"):  # only < 5-letter trained words inside
        assert _label(trained, word) == {"contamination": "clean", "contamination_match": None,
                                         "contamination_rule": None}
    # A 4-letter hold-out word inside a trained word shares only 4 letters: clean too.
    assert _label(["detailed"], "etai")["contamination"] == "clean"
    # The length minimum is for substrings only: a short trained word still has inflections.
    assert _label(trained, "tails")["contamination"] == "inflection"
    assert _label(["detailed"], "etail")["contamination"] == "substring"
    # The spelling rules fire only where they fit: no doubled consonant after two vowels.
    assert "rainning" not in inflections("rain") and "raining" in inflections("rain")
    assert _label(["rain"], "rainning")["contamination"] == "clean"


def test_counts_cover_every_label():
    idx = ContaminationIndex(["detailed", "sweet", "house"])
    rows = [{"word": w, **idx.label(w)} for w in ("tailed", "greenhouse", "sweetly", "pelican")]
    assert label_counts(rows) == {"clean": 1, "substring": 2, "inflection": 1}
    assert direction_counts(rows) == {
        "substring": {"trained_in_holdout": 1, "holdout_in_trained": 1},
        "inflection": {"holdout_is_trained_plus_suffix": 1, "trained_is_holdout_plus_suffix": 0}}


def _two_tokens(words, add_special_tokens=False):
    return {"input_ids": [[0, 1] for _ in words]}


RAW = ["tailed", "plying", "sweetly", "gilled", "greenhouse", "marmalade", "pelican", "harbour", "lantern",
       "quiver", "bramble", "thimble"]
TRAINED = ["detailed", "applying", "sweet", "gill", "house"]


def test_exclude_removes_labels_before_sampling():
    cfg = replace(HoldoutConfig(), n_validation=2, n_test=4)
    splits, counts = build_holdout(RAW, TRAINED, _two_tokens, cfg, 0)
    rows = splits["validation"] + splits["test"]
    assert all({"contamination", "contamination_match", "contamination_rule"} <= r.keys() for r in rows)
    assert counts["excluded_by_contamination_seen"] == 0

    only_clean = replace(cfg, exclude=["substring", "inflection"])
    splits, counts = build_holdout(RAW, TRAINED, _two_tokens, only_clean, 0)
    words = [r["word"] for s in splits.values() for r in s]
    assert len(words) == 6 and {r["contamination"] for s in splits.values() for r in s} == {"clean"}
    assert not set(words) & {"tailed", "plying", "sweetly", "gilled", "greenhouse"}
    assert counts["excluded_by_contamination_seen"] == 5

    no_subs = replace(cfg, exclude=["substring"], n_validation=1, n_test=2)
    splits, _ = build_holdout(RAW, TRAINED, _two_tokens, no_subs, 0)
    assert "substring" not in {r["contamination"] for s in splits.values() for r in s}

    # The trained words, when given apart from the disjointness set, are what labels measure.
    splits, _ = build_holdout(RAW, TRAINED, _two_tokens, replace(cfg, n_validation=0, n_test=12), 0,
                              trained_words=["sweet"])
    labels = {r["word"]: r["contamination"] for r in splits["test"]}
    assert labels["sweetly"] == "inflection" and labels["tailed"] == labels["gilled"] == "clean"

    too_many = replace(only_clean, n_validation=4, n_test=4)
    with pytest.raises(SizeError, match="data.holdout.exclude"):
        build_holdout(RAW, TRAINED, _two_tokens, too_many, 0)


def test_bad_exclude_value_is_refused_up_front():
    c = make_config("data.holdout.exclude=[substring,inflections]")
    with pytest.raises(ConfigError, match=r"data\.holdout\.exclude=.*'inflections'.*allowed: substring, inflection"):
        validate_data_config(c.data, c.template)
    with pytest.raises(ConfigError, match="data.holdout.exclude"):
        build_holdout(RAW, TRAINED, _two_tokens, replace(HoldoutConfig(), exclude=["clean"]), 0)
    ok = make_config("data.holdout.exclude=[substring]")
    validate_data_config(ok.data, ok.template)
    # exclude changes the data, so it changes the data cache key
    base = make_config()
    assert data_cache_payload(base.data, base.template, base.model)["format"] >= 3  # rows carry labels
    assert cache_key(data_cache_payload(ok.data, ok.template, ok.model)) != cache_key(
        data_cache_payload(base.data, base.template, base.model))


def _predictions(questions, correct):
    return [{"id": q["id"], "sample": 0, "batch": 0, "reply": "x", "truncated": False,
             "parsed": q["answer"] if correct(q) else None, "lenient": None, "spelled": False,
             "ambiguous": False, "correct": correct(q), "lenient_correct": correct(q)} for q in questions]


def test_questions_carry_the_label_and_metrics_break_down_by_it():
    cfg = make_config("+experiment=quickstart").eval
    labels = ("clean", "substring", "inflection")
    rows = [{"word": w, "n_tokens": 2, "contamination": labels[i % 3]} for i, w in enumerate(WORDS)]
    questions = build_questions(rows, cfg)
    by_word = {r["word"]: r["contamination"] for r in rows}
    assert all(q["contamination"] == by_word[q["word"]] for q in questions)

    m = compute_metrics(questions, _predictions(questions, lambda q: q["contamination"] == "clean"))
    for task in ("position", "count"):
        t = m["tasks"][task]
        assert set(t["by_contamination"]) <= set(labels) and "clean" in t["by_contamination"]
        assert t["by_contamination"]["clean"]["rate"] == 1.0
        assert all(v["rate"] == 0.0 for k, v in t["by_contamination"].items() if k != "clean")
        assert t["clean_accuracy"]["rate"] == 1.0
        assert t["clean_accuracy"]["n"] == sum(q["task"] == task and q["contamination"] == "clean" for q in questions)
        assert t["accuracy"]["rate"] < 1.0

    # Older hold-out rows have no label: questions stay as they were, metrics say "unknown".
    old = build_questions([{"word": w, "n_tokens": 2} for w in WORDS], cfg)
    assert all("contamination" not in q for q in old)
    m = compute_metrics(old, _predictions(old, lambda q: True))
    for t in m["tasks"].values():
        assert list(t["by_contamination"]) == ["unknown"] and t["by_contamination"]["unknown"]["rate"] == 1.0
        assert t["clean_accuracy"]["n"] == 0


@pytest.mark.slow  # builds / loads a model or a full tokenizer: 5-20 s
def test_data_build_labels_every_holdout_row_against_the_trained_words(tmp_path, cache_dir, qwen_tokenizer,
                                                                        monkeypatch):
    """The real recipe on the small Qwen3 build: rows labelled, counts in the manifest."""
    import json

    import spelling_exp.model.tokenizer as tokenizer_module
    from spelling_exp.data.build import build_data

    monkeypatch.setattr(tokenizer_module, "load_tokenizer", lambda *a, **k: qwen_tokenizer)  # the session's
    c = make_config("model=qwen3_4b", "model.tokenizer_source=offline", "data=small")
    manifest = build_data(c.data, c.template, c.model, str(cache_dir), tmp_path)
    trained = {json.loads(line)["word"] for line in open(tmp_path / "examples_train.jsonl")}
    index = ContaminationIndex(trained)
    cont = manifest["contamination"]
    assert cont["trained_words"] == len(trained) and cont["exclude"] == []
    for split in ("validation", "test"):
        rows = [json.loads(line) for line in open(tmp_path / f"holdout_{split}.jsonl")]
        for r in rows:
            assert {k: r[k] for k in ("contamination", "contamination_match", "contamination_rule")} == \
                index.label(r["word"])
        assert cont[split] == label_counts(rows) and sum(cont[split].values()) == len(rows)
        assert cont["directions"][split] == direction_counts(rows)
