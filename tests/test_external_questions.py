"""External question sets (eval.questions_file): JSONL and CharBench-style CSV, parsed, converted,
verified and checked against training words (fast, no model), the extra `occurrence` task through
metrics / comparison / report (fast, fake replies), and one real CLI run on the embedded model (slow)."""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import make_config, run_cli

from spelling_exp.errors import ConfigError, HoldoutOverlapError, SizeError
from spelling_exp.evaluation.external import (
    apply_overlap,
    load_external_questions,
    read_questions_file,
    resolve_format,
    source_counts,
)
from spelling_exp.evaluation.metrics import compute_metrics
from spelling_exp.evaluation.questions import validate_eval_config
from spelling_exp.evaluation.recipe import eval_payload, score

JSONL_ROWS = [
    {"id": "p1", "task": "position", "word": "pelican", "k": 3, "answer": "l"},
    {"id": "p2", "task": "position", "word": "pelican", "k": 7, "answer": "N"},
    {"id": "p3", "task": "position", "word": "lantern", "k": 4, "answer": "t", "prompt": "Letter 4 of lantern?",
     "stratum": "custom"},
    {"id": 7, "task": "count", "word": "strawberry", "letter": "r", "answer": 3},
    {"id": "c2", "task": "count", "word": "banana", "letter": "z", "answer": "0", "prompt": "How many z in banana?"},
    {"id": "o1", "task": "occurrence", "word": "banana", "letter": "a", "stratum": "last", "index_base": 1,
     "answer": 6, "prompt": "Position (1 = first) of the last 'a' in 'banana'?"},
]
CHARBENCH_ROWS = [
    {"question": "How many times does 'r' appear in 'strawberry'?", "answer": "3", "word": "strawberry",
     "character": "r", "task": "count_character_frequency"},
    {"question": "What is the index of the first occurrence of 'a' in 'banana'? (0-indexed)", "answer": "1",
     "word": "banana", "character": "a", "task": "find_first_occurrence"},
    {"question": "What is the index of the last occurrence of 'a' in 'banana'? (0-indexed)", "answer": "5",
     "word": "banana", "character": "a", "task": "find_last_occurrence"},
    {"question": "How many unique characters are in 'banana'?", "answer": "3", "word": "banana", "character": "",
     "task": "count_unique_chars"},
    {"question": "How many unique characters are in 'apple'?", "answer": "4", "word": "apple", "character": "",
     "task": "count_unique_chars"},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_charbench(path: Path, rows: list[dict], columns=("question", "answer", "word", "character", "task")) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def base_eval():
    return make_config().eval


def cfg_for(base_eval, path: Path, **kw):
    return replace(base_eval, questions_file=str(path), **kw)


def by_id(qs):
    return {q["id"]: q for q in qs.questions}


# ------------------------------------------------------------------ parse + convert
def test_jsonl_questions_are_converted_like_generated_ones(tmp_path, base_eval):
    cfg = cfg_for(base_eval, write_jsonl(tmp_path / "q.jsonl", JSONL_ROWS))
    qs = read_questions_file(cfg)
    q = by_id(qs)
    assert list(q) == ["p1", "p2", "p3", "7", "c2", "o1"]  # file order; an integer id becomes a string
    assert q["p1"]["stratum"] == "middle" and q["p2"]["stratum"] == "last" and q["p3"]["stratum"] == "custom"
    assert q["p2"]["answer"] == "n"  # letters are compared as the parser reads them: lowercase
    assert q["7"]["stratum"] == "3+" and q["c2"]["stratum"] == "0" and q["c2"]["answer"] == "0"
    # a prompt is used verbatim; without one, our phrasings (eval.phrasings), seeded per id
    assert q["p3"]["prompt"] == "Letter 4 of lantern?" and q["p3"]["phrasing"] == "file"
    assert q["c2"]["prompt"] == "How many z in banana?"
    assert q["p1"]["phrasing"].startswith("position/") and "pelican" in q["p1"]["prompt"]
    key, i = q["7"]["phrasing"].split("/")
    assert key == "count" and q["7"]["prompt"] == cfg.phrasings["count"][int(i)].format(word="strawberry", letter="r")
    assert q["p2"]["phrasing"].split("/")[0] in ("position", "position_last")  # k = last letter: maybe "last letter"
    assert read_questions_file(cfg).questions == qs.questions  # deterministic
    o = q["o1"]
    assert (o["task"], o["stratum"], o["k"], o["index_base"], o["answer"]) == ("occurrence", "last", 6, 1, "6")
    assert all(q["word_length"] == len(q["word"]) for q in qs.questions)
    assert qs.source["rows"] == 6 and qs.source["n_skipped"] == 0
    assert qs.source["by_task"] == {"position": 3, "count": 2, "occurrence": 1}


def test_charbench_indices_stay_zero_based_in_their_own_question_and_k_is_one_based(tmp_path, base_eval):
    cfg = cfg_for(base_eval, write_charbench(tmp_path / "cb.csv", CHARBENCH_ROWS))
    qs = read_questions_file(cfg)
    assert qs.source["format"] == "charbench" and qs.source["rows"] == 5
    assert qs.source["skipped"] == {"count_unique_chars": 2} and qs.source["n_skipped"] == 2
    q = by_id(qs)
    assert list(q) == ["charbench-00001", "charbench-00002", "charbench-00003"]
    count, first, last = q.values()
    assert (count["task"], count["letter"], count["answer"], count["stratum"]) == ("count", "r", "3", "3+")
    assert count["prompt"] == CHARBENCH_ROWS[0]["question"] and count["phrasing"] == "charbench"
    # CharBench's 0-based index is the answer its verbatim question asks for; k is the 1-based position
    assert (first["task"], first["stratum"], first["answer"], first["index_base"], first["k"]) == \
        ("occurrence", "first", "1", 0, 2)
    assert (last["stratum"], last["answer"], last["index_base"], last["k"]) == ("last", "5", 0, 6)
    assert last["prompt"] == CHARBENCH_ROWS[2]["question"]
    assert "banana"[first["k"] - 1] == "a" and "banana"[last["k"] - 1] == "a"


def test_charbench_id_column_absent_character_and_missing_column(tmp_path, base_eval):
    rows = [{**CHARBENCH_ROWS[0], "id": "cb-a"},
            {"question": "first 'z' in 'banana'?", "answer": "-1", "word": "banana", "character": "z",
             "task": "find_first_occurrence", "id": "cb-b"}]
    path = write_charbench(tmp_path / "cb.csv", rows, ("id", "question", "answer", "word", "character", "task"))
    qs = read_questions_file(cfg_for(base_eval, path))
    assert [q["id"] for q in qs.questions] == ["cb-a"]
    assert qs.source["skipped"] == {"find_first_occurrence (character absent)": 1}
    bad = write_charbench(tmp_path / "bad.csv", CHARBENCH_ROWS, ("question", "answer", "word", "task"))
    with pytest.raises(ConfigError, match=r"line 1: missing column 'character'"):
        read_questions_file(cfg_for(base_eval, bad))


def test_format_by_extension_or_setting(tmp_path, base_eval):
    assert resolve_format("a.jsonl", "auto") == "jsonl" and resolve_format("a.CSV", "auto") == "charbench"
    assert resolve_format("a.txt", "charbench") == "charbench"
    with pytest.raises(ConfigError, match="eval.questions_format=jsonl or charbench"):
        resolve_format("a.txt", "auto")
    path = write_jsonl(tmp_path / "q.txt", JSONL_ROWS[:1])
    assert len(read_questions_file(cfg_for(base_eval, path, questions_format="jsonl")).questions) == 1
    with pytest.raises(ConfigError, match="no such file"):
        read_questions_file(cfg_for(base_eval, tmp_path / "missing.jsonl"))


# ------------------------------------------------------------------ verification
@pytest.mark.parametrize("row, fragment", [
    ({"id": "bad-pos", "task": "position", "word": "pelican", "k": 3, "answer": "e"}, "letter 3 of 'pelican' is 'l'"),
    ({"id": "bad-count", "task": "count", "word": "strawberry", "letter": "r", "answer": 2}, "is 3"),
    ({"id": "bad-occ", "task": "occurrence", "word": "banana", "letter": "a", "stratum": "first", "index_base": 0,
      "answer": 2, "prompt": "?"}, "0-based index of the first 'a' in 'banana' is 1"),
    ({"id": "bad-absent", "task": "occurrence", "word": "banana", "letter": "z", "stratum": "first",
      "index_base": 1, "answer": 1, "prompt": "?"}, "'z' does not occur in 'banana'"),
])
def test_a_wrong_answer_is_refused_with_its_id_and_line(tmp_path, base_eval, row, fragment):
    path = write_jsonl(tmp_path / "q.jsonl", [JSONL_ROWS[0], row])
    with pytest.raises(ConfigError) as e:
        read_questions_file(cfg_for(base_eval, path))
    msg = str(e.value)
    assert f"line 2 (id '{row['id']}')" in msg and "is wrong" in msg and fragment in msg, msg


def test_a_wrong_charbench_answer_is_refused_with_its_id(tmp_path, base_eval):
    rows = [CHARBENCH_ROWS[0], {**CHARBENCH_ROWS[1], "answer": "2"}]  # 1-based instead of CharBench's 0-based
    with pytest.raises(ConfigError, match=r"line 3 \(id 'charbench-00002'\): answer '2' is wrong"):
        read_questions_file(cfg_for(base_eval, write_charbench(tmp_path / "cb.csv", rows)))


def test_duplicate_ids_are_refused(tmp_path, base_eval):
    path = write_jsonl(tmp_path / "q.jsonl", [JSONL_ROWS[0], JSONL_ROWS[3], {**JSONL_ROWS[1], "id": "p1"}])
    with pytest.raises(ConfigError, match=r"line 3: duplicate id 'p1' \(first on line 1\)"):
        read_questions_file(cfg_for(base_eval, path))


@pytest.mark.parametrize("row, field", [
    ({"task": "position", "word": "pelican", "k": 3, "answer": "l"}, "id"),
    ({"id": "x", "word": "pelican", "k": 3, "answer": "l"}, "task"),
    ({"id": "x", "task": "position", "k": 3, "answer": "l"}, "word"),
    ({"id": "x", "task": "position", "word": "pelican", "answer": "l"}, "k"),
    ({"id": "x", "task": "position", "word": "pelican", "k": 3}, "answer"),
    ({"id": "x", "task": "count", "word": "pelican", "answer": 1}, "letter"),
    ({"id": "x", "task": "occurrence", "word": "banana", "letter": "a", "stratum": "first", "answer": 2,
      "prompt": "?"}, "index_base"),
    ({"id": "x", "task": "occurrence", "word": "banana", "letter": "a", "stratum": "first", "answer": 2,
      "index_base": 1}, "prompt"),
])
def test_a_missing_field_names_its_line_and_field(tmp_path, base_eval, row, field):
    path = write_jsonl(tmp_path / "q.jsonl", [JSONL_ROWS[0], row])
    with pytest.raises(ConfigError, match=rf"line 2.*missing field '{field}'"):
        read_questions_file(cfg_for(base_eval, path))


def test_bad_values_are_refused(tmp_path, base_eval):
    for row, fragment in [({"id": "x", "task": "length", "word": "abc", "answer": 3}, "is not one of"),
                          ({"id": "x", "task": "position", "word": "abc", "k": 4, "answer": "c"}, "outside the word"),
                          ({"id": "x", "task": "count", "word": "abc", "letter": "ab", "answer": 0}, "one character"),
                          ({"id": "x", "task": "count", "word": "abc", "letter": "a", "answer": "one"}, "integer")]:
        with pytest.raises(ConfigError, match=fragment):
            read_questions_file(cfg_for(base_eval, write_jsonl(tmp_path / "q.jsonl", [row])))
    (tmp_path / "broken.jsonl").write_text(json.dumps(JSONL_ROWS[0]) + "\n{not json\n")
    with pytest.raises(ConfigError, match="line 2: not JSON"):
        read_questions_file(cfg_for(base_eval, tmp_path / "broken.jsonl"))
    with pytest.raises(SizeError, match="no questions"):
        read_questions_file(cfg_for(base_eval, write_charbench(tmp_path / "cb.csv", CHARBENCH_ROWS[3:])))


# ------------------------------------------------------------------ training-word overlap
@pytest.mark.parametrize("mode, n_questions, dropped", [("drop", 4, 2), ("keep", 6, 0)])
def test_overlap_drop_and_keep_counts(tmp_path, base_eval, mode, n_questions, dropped):
    cfg = cfg_for(base_eval, write_jsonl(tmp_path / "q.jsonl", JSONL_ROWS), on_overlap=mode)
    qs = load_external_questions(cfg, ["Pelican", "the", "and"], count_tokens=lambda ws: [len(w) // 3 for w in ws])
    s = qs.source
    assert (s["questions"], s["dropped"], s["overlapping_words"], s["overlapping_questions"]) == \
        (n_questions, dropped, 1, 2)
    assert s["overlapping_examples"] == ["pelican"] and s["on_overlap"] == mode
    assert {q["word"] for q in qs.questions if q["training_word"]} == ({"pelican"} if mode == "keep" else set())
    assert all(q["word_tokens"] == len(q["word"]) // 3 for q in qs.questions)
    assert "sha256" in source_counts(s) and "path" not in source_counts(s)


def test_overlap_error_names_the_words(tmp_path, base_eval):
    cfg = cfg_for(base_eval, write_jsonl(tmp_path / "q.jsonl", JSONL_ROWS), on_overlap="error")
    with pytest.raises(HoldoutOverlapError, match=r"1 word\(s\) in 2 question\(s\) are training words: pelican"):
        load_external_questions(cfg, ["pelican"])
    assert load_external_questions(cfg, ["walrus"]).source["overlapping_words"] == 0  # no overlap: fine


def test_dropping_every_question_is_refused(tmp_path, base_eval):
    cfg = cfg_for(base_eval, write_jsonl(tmp_path / "q.jsonl", JSONL_ROWS))
    with pytest.raises(SizeError, match="every question's word is a training word"):
        apply_overlap(read_questions_file(cfg), ["pelican", "lantern", "strawberry", "banana"], "drop")


# ------------------------------------------------------------------ config and cache key
def test_occurrence_is_not_a_generated_task(base_eval):
    with pytest.raises(ConfigError, match="'occurrence' questions are not generated"):
        validate_eval_config(replace(base_eval, tasks=["position", "occurrence"]))
    validate_eval_config(replace(base_eval, tasks=["occurrence"], questions_file="x.jsonl"))


def test_the_questions_source_is_in_the_identity_only_for_a_file(tmp_path, base_eval):
    model = make_config().model
    plain = eval_payload(base_eval, model, "sha", None)
    assert "questions_source" not in plain and plain["split"] == "test"
    cfg = cfg_for(base_eval, write_jsonl(tmp_path / "q.jsonl", JSONL_ROWS))
    src = source_counts(load_external_questions(cfg, []).source)
    ext = eval_payload(cfg, model, "sha", None, src)
    assert ext["split"] == "external" and ext["questions_source"]["sha256"] == src["sha256"]


# ------------------------------------------------------------------ the extra task downstream
def _fake_eval(d: Path, questions: list[dict], replies: dict[str, str], identity: dict) -> dict:
    d.mkdir(parents=True)
    preds = [{"id": q["id"], "sample": 0, "batch": 0, "reply": replies.get(q["id"], "I don't know"),
              "truncated": False, **score(q, replies.get(q["id"], "I don't know"))} for q in questions]
    m = compute_metrics(questions, preds)
    m["meta"] = {"identity": identity}
    (d / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    (d / "metrics.json").write_text(json.dumps(m))
    return m


def test_occurrence_goes_through_metrics_comparison_and_report(tmp_path, base_eval):
    from spelling_exp.analysis import report as rp
    from spelling_exp.analysis.compare import compare_evals, comparison_table

    rows = JSONL_ROWS + [{"id": f"o{i}", "task": "occurrence", "word": w, "letter": w[0], "stratum": "first",
                          "index_base": 1, "answer": 1, "prompt": f"first {w[0]} in {w}?"}
                         for i, w in enumerate(["walrus", "gazebo", "kettle", "cobalt"], start=2)]
    cfg = cfg_for(base_eval, write_jsonl(tmp_path / "q.jsonl", rows), on_overlap="keep")
    questions = load_external_questions(cfg, []).questions
    o1 = next(q for q in questions if q["id"] == "o1")
    assert score(o1, "The last 'a' is at position 6.")["correct"] and not score(o1, "It is at index 5.")["correct"]
    identity = {"model": "m", "questions_sha256": "x", "split": "external"}
    base = _fake_eval(tmp_path / "base", questions, {"o1": "6", "o2": "1", "p1": "l"}, identity)
    adapter = _fake_eval(tmp_path / "adapter", questions, {"o1": "6", "o2": "1", "o3": "1", "p1": "l", "7": "3"},
                         {**identity, "adapter": "a"})
    assert list(base["tasks"]) == ["position", "count", "occurrence"]
    occ = adapter["tasks"]["occurrence"]
    assert occ["questions"] == 5 and occ["accuracy"]["k"] == 3 and occ["right_only_in_spelling"]["k"] == 0
    assert set(occ["by_stratum"]) == {"first", "last"} and "mae" in occ and "by_k" in occ
    c = compare_evals(tmp_path / "base", tmp_path / "adapter", n_boot=200)
    assert list(c["tasks"]) == ["position", "count", "occurrence"] and c["primary"] == ["position", "count"]
    assert c["tasks"]["occurrence"]["strict"]["analysis"] == "exploratory"
    assert "| occurrence (strict) | exploratory |" in comparison_table(c)
    plots = rp.make_plots(base, adapter, [], tmp_path / "plots", dpi=40)
    assert plots and all(p.is_file() for _, p in plots)


# ------------------------------------------------------------------ end to end (real model)
EVAL = ["stage=eval", "data=small", "eval.batch_size=4", "eval.max_new_tokens=12", "eval/sampling=greedy"]


@pytest.mark.slow
def test_external_sets_through_the_cli(tmp_path, cache_dir):
    """A JSONL and a CharBench file (one training word in each: 'the', 'and' are SmolLM2 tokens;
    the other words are not), evaluated by the real CLI; a wrong answer exits 2 with its id
    before any model loads."""
    jsonl = write_jsonl(tmp_path / "q.jsonl", [
        JSONL_ROWS[0],
        {"id": "c1", "task": "count", "word": "bookkeeper", "letter": "e", "answer": 3},
        {"id": "t1", "task": "count", "word": "the", "letter": "e", "answer": 1},
        {"id": "o1", "task": "occurrence", "word": "balalaika", "letter": "a", "stratum": "first", "index_base": 1,
         "answer": 2, "prompt": "At which position (1 = first letter) is the first 'a' in 'balalaika'? Number only."}])
    r = run_cli(*EVAL, f"eval.questions_file={jsonl}", "eval.on_overlap=keep", f"output_dir={tmp_path / 'a'}")
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / "a" / "eval" / "metrics.json").read_text())
    assert set(m["tasks"]) == {"position", "count", "occurrence"}
    assert "| occurrence | 1 |" in r.stdout  # the metrics table, in task order
    assert sum(t["questions"] for t in m["tasks"].values()) == 4
    src = m["meta"]["questions_source"]
    assert (src["questions"], src["overlapping_words"], src["dropped"]) == (4, 1, 0)
    assert m["meta"]["identity"]["split"] == "external"
    assert json.loads((tmp_path / "a" / "eval" / "questions_source.json").read_text())["overlapping_examples"] == \
        ["the"]
    assert "questions: 4 from" in r.stdout and "1 kept whose word is a training word" in r.stdout

    cb = write_charbench(tmp_path / "cb.csv", [
        {"question": "How many times does 'a' appear in 'tarantula'?", "answer": "3", "word": "tarantula",
         "character": "a", "task": "count_character_frequency"},
        {"question": "What is the index of the first occurrence of 'a' in 'marmalade'? (0-indexed)", "answer": "1",
         "word": "marmalade", "character": "a", "task": "find_first_occurrence"},
        {"question": "What is the index of the last occurrence of 'a' in 'marmalade'? (0-indexed)", "answer": "6",
         "word": "marmalade", "character": "a", "task": "find_last_occurrence"},
        CHARBENCH_ROWS[3],
        {"question": "What is the index of the first occurrence of 'n' in 'and'? (0-indexed)", "answer": "1",
         "word": "and", "character": "n", "task": "find_first_occurrence"}])
    r = run_cli(*EVAL, f"eval.questions_file={cb}", f"output_dir={tmp_path / 'b'}")  # default: drop
    assert r.returncode == 0, r.stderr[-3000:]
    d = tmp_path / "b" / "eval"
    m = json.loads((d / "metrics.json").read_text())
    assert {t: v["questions"] for t, v in m["tasks"].items()} == {"count": 1, "occurrence": 2}
    src = json.loads((d / "questions_source.json").read_text())
    assert (src["rows"], src["n_skipped"], src["dropped"], src["questions"]) == (5, 1, 1, 3)
    assert m["meta"]["questions_source"]["skipped"] == {"count_unique_chars": 1}
    qs = [json.loads(line) for line in open(d / "questions.jsonl")]
    assert {q["index_base"] for q in qs if q["task"] == "occurrence"} == {0}

    bad = write_jsonl(tmp_path / "bad.jsonl", [JSONL_ROWS[0], {**JSONL_ROWS[3], "id": "wrong-one", "answer": 2}])
    r = run_cli(*EVAL, f"eval.questions_file={bad}", f"output_dir={tmp_path / 'c'}")
    assert r.returncode == 2 and "'wrong-one'" in r.stderr and "is wrong" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr and not (tmp_path / "c").exists()
