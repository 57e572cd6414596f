"""analysis/study.py: a sweep over training seeds read as one design, on hand-built evaluations
(simulated replies with a known effect and injected seed variance): every seed enters, the
primary contrast follows the plan, the plot is drawn, different questions are refused."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from spelling_exp.analysis.compare import write_comparison
from spelling_exp.analysis.study import analyse, is_study, write_study
from spelling_exp.errors import ConfigError

IDENTITY = {"model": {"path": "m"}, "questions_sha256": "q", "split": "test", "generation": {"n_samples": 3}}


def _eval(d, questions, scores, n_samples=3, rng=None):
    d.mkdir(parents=True)
    (d / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    rows = []
    for q, p in zip(questions, scores):
        hits = rng.binomial(1, p, n_samples)
        # every fifth reply, when wrong, holds no parseable answer (no draw: the replies' stream stays as it was)
        unanswered = [(len(rows) + k) % 5 == 0 for k in range(n_samples)]
        rows += [{"id": q["id"], "sample": k, "correct": bool(h), "parsed": None if not h and u else "x"}
                 for k, (h, u) in enumerate(zip(hits, unanswered))]
    (d / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # forced choice: right where the question's true accuracy is above one half (no draw)
    (d / "forced_choice.jsonl").write_text("".join(json.dumps({"id": q["id"], "correct": bool(p > 0.5)}) + "\n"
                                                   for q, p in zip(questions, scores)))
    (d / "metrics.json").write_text(json.dumps({"meta": {"identity": IDENTITY}}))
    return d


def build_study(tmp_path, seeds=4, effect=0.15, seed_sd=0.03, analysis=None, other_questions_in=None):
    rng = np.random.default_rng(0)
    words = [f"word{i}" for i in range(80)]
    questions = [{"id": f"{t}-{i}", "task": t, "word": words[i % 80], "answer": 1}
                 for t in ("position", "count") for i in range(120)]
    p = rng.beta(2, 3, len(questions))
    sweep = tmp_path / "sweep"
    base = _eval(sweep / "0" / "eval_base", questions, p, rng=rng)
    for s in range(seeds):
        job = sweep / str(s)
        shift = rng.normal(0, seed_sd, 2)
        qs = questions if s != other_questions_in else questions[:-1]
        adapter = _eval(job / "eval_adapter", qs, np.clip(p + effect + shift[0], 0, 1), rng=rng)
        control = _eval(job / "eval_control", questions, np.clip(p + shift[1], 0, 1), rng=rng)
        (job / "compare").mkdir()
        write_comparison({"base_dir": str(base), "adapter_dir": str(adapter), "control_dir": str(control),
                          "tasks": {}}, job / "compare")
        (job / ".hydra").mkdir()
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"analysis": analysis or {}}))
    return sweep, [str(s) for s in range(seeds)]


def test_a_seed_sweep_is_one_design_with_the_planned_primary_contrast(tmp_path):
    sweep, jobs = build_study(tmp_path)
    s = analyse(sweep, jobs)
    assert s["n_seeds"] == 4 and s["plan"]["primary_contrast"] == "spelling_vs_placebo"
    assert set(s["contrasts"]) == {"spelling_vs_placebo", "spelling_vs_base", "placebo_vs_base"}
    for task in ("position", "count"):
        r = s["contrasts"]["spelling_vs_placebo"][task]
        assert r["analysis"] == "primary" and r["n_seeds"] == [4, 4] and len(r["per_seed"]) == 4
        assert r["ci"][0] < 0.15 < r["ci"][1] and r["p_holm"] < 0.05 and "the method helps" in r["verdict"]
        assert r["variance"]["seeds"] > 0 and r["variance"]["replies"] > 0
        assert s["contrasts"]["placebo_vs_base"][task]["analysis"] == "exploratory"
        assert s["contrasts"]["spelling_vs_base"][task]["n_seeds"] == [1, 4]
        assert -1 <= r["forced_choice"]["diff"] <= 1 and "ci" in r["forced_choice"]
        f = r["format"]  # whatever the unanswered replies meant, the strict difference lies between the bounds
        assert f["worst"]["diff"] <= r["diff"] <= f["best"]["diff"] and 0 < f["no_answer"]["a"] < 0.2
    _, md = write_study(sweep, jobs)
    assert (sweep / "study" / "study.png").stat().st_size > 10_000
    assert json.loads((sweep / "study" / "study.json").read_text())["plan"]["hash"] == s["plan"]["hash"]
    assert any("the method helps" in line for line in md) and any("seeds / questions / replies" in line for line in md)
    assert any("if unanswered were: worst" in line for line in md)
    assert any("forced choice: A → B" in line for line in md)


def test_no_effect_with_many_questions_is_equivalence(tmp_path):
    sweep, jobs = build_study(tmp_path, effect=0.0, seed_sd=0.0, analysis={"sesoi": 0.12})
    r = analyse(sweep, jobs)["contrasts"]["spelling_vs_placebo"]["count"]
    assert r["tost_p"] < 0.05 and "equivalent" in r["verdict"]


def test_the_declared_contrast_is_followed(tmp_path):
    sweep, jobs = build_study(tmp_path, analysis={"primary_contrast": "spelling_vs_base", "primary_tasks": ["count"]})
    s = analyse(sweep, jobs)
    assert s["contrasts"]["spelling_vs_base"]["count"]["analysis"] == "primary"
    assert s["contrasts"]["spelling_vs_base"]["position"]["analysis"] == "exploratory"
    assert s["contrasts"]["spelling_vs_placebo"]["count"]["analysis"] == "exploratory"


def test_seeds_evaluated_on_other_questions_are_refused(tmp_path):
    sweep, jobs = build_study(tmp_path, other_questions_in=2)
    with pytest.raises(ConfigError, match="job 2 asked other questions"):
        analyse(sweep, jobs)


def test_only_a_sweep_over_seeds_is_a_study():
    rows = [{}, {}]
    assert is_study(rows, ["train.seed"]) and is_study(rows, ["data.examples.seed", "train.seed"])
    assert not is_study(rows, ["lora.r"]) and not is_study(rows, ["lora.r", "train.seed"]) and not is_study(rows[:1],
                                                                                                          ["train.seed"])


@pytest.mark.slow
def test_the_cpu_study_preset_alone_launches_every_seed_and_pools_them(tmp_path, cache_dir):
    """`+experiment=study_cpu` is a multirun by itself (hydra.mode: MULTIRUN in the preset): one job
    per seed, spelling + placebo each, one shared base evaluation, the study at the end. Real
    SmolLM2 at toy size (2 seeds here, 3 in the preset)."""
    from helpers import run_cli

    r = run_cli("+experiment=study_cpu", "data=small", "data.examples.n_train=256", "data.examples.n_val=32",
                "train.max_steps=4", "train.batch_size=4", "train.save_steps=2", "eval.n_questions=6",
                "eval.max_new_tokens=32", "logger=none", "train.seed=0,1",
                f"paths.multirun_root={tmp_path}", cache=cache_dir)
    assert r.returncode == 0, r.stderr[-3000:]
    sweep = tmp_path / "study_cpu" / "seeds"
    study = json.loads((sweep / "study" / "study.json").read_text())
    assert study["n_seeds"] == 2 and study["plan"]["primary_contrast"] == "spelling_vs_placebo"
    primary = study["contrasts"]["spelling_vs_placebo"]["position"]
    assert len(primary["per_seed"]) == 2 and "ci" in primary and "tost_p" in primary
    # the training words follow the seed, the questions do not
    words = [{json.loads(x)["word"] for x in (sweep / j / "data" / "examples_train.jsonl").read_text().splitlines()}
             for j in ("0", "1")]
    assert words[0] != words[1]
    assert ((sweep / "0" / "eval_base" / "questions.jsonl").read_bytes()
            == (sweep / "1" / "eval_base" / "questions.jsonl").read_bytes())
    assert "reused from cache" in (sweep / "1" / "study_cpu.log").read_text()
    assert "The study: the training method over seeds" in (sweep / "comparison.md").read_text()
