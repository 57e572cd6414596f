"""analysis/compare.py::answer_format: how far the strict difference depends on replies the parser
could not read. Built by hand so every number is known: the adapter leaves some questions
unanswered that the base model got right, and answers the rest exactly as the base does."""
from __future__ import annotations

import json

import pytest

from spelling_exp.analysis.compare import compare_evals, comparison_table

IDENTITY = {"model": {"path": "m"}, "questions_sha256": "q", "split": "test"}
N = 40
RATES = {k: {"rate": 0.0} for k in ("no_answer", "ambiguous", "spelled_out", "truncated")}


def _eval(d, questions, replies):
    """replies: per question, a list of (parsed, correct)."""
    d.mkdir(parents=True)
    (d / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    rows = [{"id": q["id"], "sample": k, "parsed": p, "correct": c}
            for q, rs in zip(questions, replies) for k, (p, c) in enumerate(rs)]
    (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = {"count": {**RATES, "baselines": {"best": None, "rules": {}}}}
    (d / "metrics.json").write_text(json.dumps({"meta": {"identity": IDENTITY}, "tasks": tasks}))
    return d


@pytest.fixture
def drifted(tmp_path):
    questions = [{"id": f"count-{i:03d}", "task": "count", "word": f"w{i}", "answer": "1"} for i in range(N)]
    base = [[("1", True)] if i % 2 == 0 else [("2", False)] for i in range(N)]
    # the adapter does not answer 10 of the questions the base got right; elsewhere it answers as the base
    adapter = [[(None, False)] if i % 4 == 0 else r for i, r in enumerate(base)]
    return (_eval(tmp_path / "base", questions, base), _eval(tmp_path / "adapter", questions, adapter))


def test_bounds_both_answered_and_the_no_answer_test(drifted):
    c = compare_evals(*drifted, n_boot=500)
    e = c["tasks"]["count"]
    f = e["format"]
    assert e["strict"]["diff"] == pytest.approx(-10 / N)
    # where both answered, nothing changed: the whole strict loss is unanswered replies
    assert f["both_answered"]["n"] == 30 and f["both_answered"]["diff"] == pytest.approx(0.0)
    assert f["answered_accuracy"]["base"] == {"n": 40, "rate": 0.5}
    assert f["answered_accuracy"]["adapter"]["n"] == 30
    assert f["answered_accuracy"]["adapter"]["rate"] == pytest.approx(10 / 30)
    # worst: unanswered wrong for the adapter (the base answered everything): the strict difference;
    # best: unanswered right for the adapter
    assert f["bounds"]["worst"]["diff"] == pytest.approx(-10 / N)
    assert f["bounds"]["best"]["diff"] == pytest.approx(0.0)
    na = f["no_answer"]
    assert na["diff"] == pytest.approx(10 / N) and na["p"] < 0.01  # 10 discordant, all one way
    assert all(r["analysis"] == "exploratory" for r in (na, f["both_answered"], *f["bounds"].values()))


def test_the_bounds_contain_the_strict_difference_with_several_replies(tmp_path):
    questions = [{"id": f"count-{i:03d}", "task": "count", "word": f"w{i}", "answer": "1"} for i in range(N)]
    base = [[("1", True), (None, False), ("0", False)] if i % 3 else [("1", True)] * 3 for i in range(N)]
    adapter = [[(None, False), ("1", True), (None, False)] if i % 2 else [("1", True), ("3", False), ("1", True)]
               for i in range(N)]
    c = compare_evals(_eval(tmp_path / "a", questions, base), _eval(tmp_path / "b", questions, adapter), n_boot=500)
    f = c["tasks"]["count"]["format"]
    assert f["bounds"]["worst"]["diff"] <= c["tasks"]["count"]["strict"]["diff"] <= f["bounds"]["best"]["diff"]
    assert f["bounds"]["best"]["diff"] - f["bounds"]["worst"]["diff"] == pytest.approx(
        f["no_answer"]["base"] + f["no_answer"]["adapter"])


def test_the_table_reads_the_format_and_credits_no_spelled_out_reading(drifted):
    table = comparison_table(compare_evals(*drifted, n_boot=500))
    assert "Exploratory: answer format" in table and "bounds for unanswered" in table
    assert "-25.0, +0.0" in table and "lenient" not in table.lower()
