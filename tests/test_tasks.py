"""Tasks are modules (spelling_exp/tasks/): the registry orders them, an unknown one is an error,
and a new task written here, in the test suite, goes through questions -> scoring -> metrics ->
comparison -> report with no edit anywhere else."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import make_config

from spelling_exp import tasks
from spelling_exp.errors import ConfigError
from spelling_exp.tasks.base import WORD_LENGTH, Breakdown, Task, pick_phrasing, walk_strata
from spelling_exp.tasks.parsing import Parsed, parse_number

VOWELS = frozenset("aeiou")


class Vowels(Task):
    """A toy task: "how many vowels has 'pelican'?", with strata "few" (<= 2) and "many"."""
    name = "vowels"
    phrasings = {"vowels": frozenset({"word"})}
    breakdowns = (Breakdown(WORD_LENGTH[0], "vowels_by_length", *WORD_LENGTH[1:]),)

    def build(self, rows: list[dict[str, Any]], cfg: Any) -> list[dict[str, Any]]:
        from spelling_exp.data.examples import seeded_rng

        rng = seeded_rng(cfg.seed, "questions:vowels")

        def ask(row, stratum):
            n = sum(c in VOWELS for c in row["word"])
            if ("few" if n <= 2 else "many") != stratum:
                return None
            prompt, phrasing = pick_phrasing(cfg, "vowels", rng, word=row["word"])
            return {"task": self.name, "stratum": stratum, "phrasing": phrasing, "prompt": prompt, "answer": str(n)}

        return walk_strata(self.name, rows, ["few", "many"] * (cfg.n_questions // 2), cfg.seed, ask)

    def score(self, q, reply: str) -> Parsed:
        return parse_number(reply, q["word"])

    def baselines(self, questions):
        return {"constant 2": lambda q: "2", "a third of the letters": lambda q: str(round(len(q["word"]) / 3))}


@pytest.fixture
def vowels_task():
    tasks.register(Vowels())
    yield
    tasks.unregister("vowels")


WORDS = ["pelican", "strawberry", "banana", "lantern", "gazebo", "kettle", "cobalt", "walrus", "rhythm", "queue",
         "aquarium", "bookkeeper", "onomatopoeia", "tryst", "education", "sequoia"]


def _eval_dir(d: Path, questions: list[dict], reply_for, identity: dict) -> dict:
    from spelling_exp.evaluation.metrics import compute_metrics
    from spelling_exp.evaluation.recipe import score

    d.mkdir(parents=True)
    preds = [{"id": q["id"], "sample": 0, "batch": 0, "reply": reply_for(q), "truncated": False,
              **score(q, reply_for(q))} for q in questions]
    m = compute_metrics(questions, preds)
    m["meta"] = {"identity": identity}
    (d / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    (d / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in preds))
    (d / "metrics.json").write_text(json.dumps(m))
    return m


def test_a_task_written_in_the_test_suite_runs_end_to_end(tmp_path, vowels_task):
    from spelling_exp.analysis.compare import compare_evals, comparison_table
    from spelling_exp.analysis.report import write_report
    from spelling_exp.evaluation.questions import build_questions

    cfg = replace(make_config().eval, tasks=["count", "vowels"], n_questions=8,
                  phrasings={**make_config().eval.phrasings, "vowels": ["How many vowels has '{word}'? A number."]})
    rows = [{"word": w, "n_tokens": 2} for w in WORDS]
    questions = build_questions(rows, cfg)
    toy = [q for q in questions if q["task"] == "vowels"]
    assert len(toy) == 8 and [q["id"] for q in toy] == [f"vowels-{i:05d}" for i in range(8)]
    assert all(q["answer"] == str(sum(c in VOWELS for c in q["word"])) for q in toy)
    assert {q["stratum"] for q in toy} == {"few", "many"} and all(q["word_length"] == len(q["word"]) for q in toy)

    identity = {"model": "m", "questions_sha256": "x", "split": "test"}
    base = _eval_dir(tmp_path / "base", questions, lambda q: "I am not sure.", identity)
    adapter = _eval_dir(tmp_path / "adapter", questions, lambda q: f"The answer is {q['answer']}.",
                        {**identity, "adapter": "a"})
    assert list(adapter["tasks"]) == ["count", "vowels"]  # registration order: built-ins first
    v = adapter["tasks"]["vowels"]
    assert v["accuracy"]["k"] == 8 and base["tasks"]["vowels"]["no_answer"]["k"] == 8
    assert "mae" in v and set(v["by_stratum"]) == {"few", "many"}
    assert set(v["baselines"]["rules"]) == {"constant 2", "a third of the letters"}

    c = compare_evals(tmp_path / "base", tmp_path / "adapter", n_boot=200)
    assert c["order"] == ["count", "vowels"] and c["primary"] == ["count"]
    assert c["tasks"]["vowels"]["strict"]["analysis"] == "exploratory" and c["tasks"]["vowels"]["strict"]["diff"] == 1
    assert "| vowels (strict) | exploratory |" in comparison_table(c)

    write_report(tmp_path / "run", "toy", c, base, adapter, [], "", None, dpi=40)
    page = tmp_path / "run" / "report" / "report.html"
    assert (tmp_path / "run" / "report" / "plots" / "vowels_by_length.png").is_file()
    assert "Vowels accuracy by word length (exploratory)" in page.read_text()


def test_an_unknown_task_is_an_error_never_a_fallback():
    cfg = make_config().eval
    from spelling_exp.evaluation.questions import build_questions, validate_eval_config
    from spelling_exp.evaluation.recipe import score

    with pytest.raises(ConfigError, match=r"eval.tasks: unknown task 'spelling' \(known: position, count, length"):
        validate_eval_config(replace(cfg, tasks=["position", "spelling"]))
    with pytest.raises(ConfigError, match="eval.tasks: no tasks given"):
        validate_eval_config(replace(cfg, tasks=[]))
    with pytest.raises(ConfigError, match="unknown task 'vowels'"):
        build_questions([{"word": "pelican"}], replace(cfg, tasks=["vowels"]))
    with pytest.raises(ConfigError, match="unknown task 'vowels'"):
        score({"id": "v", "task": "vowels", "word": "pelican", "answer": "3"}, "3")


def test_a_new_tasks_phrasings_are_checked_like_the_built_in_ones(vowels_task):
    from spelling_exp.evaluation.questions import validate_eval_config

    cfg = replace(make_config().eval, tasks=["vowels"])
    with pytest.raises(ConfigError, match="eval.phrasings.vowels: no phrasings given"):
        validate_eval_config(cfg)
    with pytest.raises(ConfigError, match=r"eval.phrasings.vowels: unknown placeholder\(s\) \['letter'\]"):
        validate_eval_config(replace(cfg, phrasings={"vowels": ["{letter} in {word}?"]}))


def test_the_registry_defines_order_and_primary_once():
    assert tasks.names()[:4] == ("position", "count", "length", "occurrence")
    assert tasks.PRIMARY_TASKS == ("position", "count")
    assert tasks.ordered(["count", "length", "position", "count"]) == ["position", "count", "length"]
    with pytest.raises(ValueError, match="registered twice"):
        tasks.register(tasks.get("count"))
    with pytest.raises(ValueError, match="primary"):
        tasks.unregister("position")


def test_every_task_declares_its_phrasings_in_the_default_config():
    """Each generated task's phrasing keys have wordings in conf/eval/default.yaml, with only its placeholders."""
    cfg = make_config().eval
    for name in tasks.names():
        task = tasks.get(name)
        if task.generated:
            task.check(replace(cfg, tasks=[name]))
            assert task.phrasing_keys(cfg) <= set(cfg.phrasings)
