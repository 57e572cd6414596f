"""analysis/plan.py: the analysis plan is declared before the run, checked up front, hashed, and
followed: a primary contrast whose arm is missing is refused, never replaced."""
from __future__ import annotations

import pytest

from spelling_exp.analysis.compare import compare_arms, verdict
from spelling_exp.analysis.plan import check_plan, design_table, resolve_plan
from spelling_exp.config import AnalysisConfig, PlanningConfig
from spelling_exp.errors import ConfigError


def test_the_contrast_is_decided_from_the_config_and_hashed():
    with_control, without = resolve_plan(AnalysisConfig(), True), resolve_plan(AnalysisConfig(), False)
    assert with_control["primary_contrast"] == "spelling_vs_placebo"
    assert without["primary_contrast"] == "spelling_vs_base"
    assert with_control["hash"] != without["hash"]
    assert resolve_plan(AnalysisConfig(), True)["hash"] == with_control["hash"]  # stable
    assert resolve_plan(AnalysisConfig(sesoi=0.05), True)["hash"] != with_control["hash"]
    declared = resolve_plan(AnalysisConfig(primary_contrast="spelling_vs_base"), True)
    assert declared["primary_contrast"] == "spelling_vs_base"


@pytest.mark.parametrize("kwargs, message", [
    ({"primary_contrast": "spelling_vs_moon"}, "analysis.primary_contrast='spelling_vs_moon': unknown contrast"),
    ({"primary_tasks": ["position", "vowels"]}, "analysis.primary_tasks: unknown task 'vowels'"),
    ({"primary_tasks": []}, "analysis.primary_tasks"),
    ({"primary_tasks": ["count", "count"]}, "no task twice"),
    ({"alpha": 0.7}, "analysis.alpha"),
    ({"sesoi": 3}, "analysis.sesoi"),
])
def test_a_plan_that_cannot_be_followed_is_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("'", "'")):
        check_plan(AnalysisConfig(**kwargs))


def test_a_missing_control_is_refused_naming_it(tmp_path):
    plan = resolve_plan(AnalysisConfig(), True)
    with pytest.raises(ConfigError, match="eval_control has no metrics.json: run train_control and eval_control"):
        compare_arms(tmp_path / "eval_base", tmp_path / "eval_adapter", tmp_path / "eval_control", plan)


def test_verdict_says_equivalent_only_when_tost_rejects():
    s = {"diff": 0.004, "ci95": [-0.01, 0.02], "p": 0.6, "p_holm": 0.8, "test": "sign_flip", "tost_p": 0.004,
         "sesoi": 0.03, "mde80": 0.02}
    assert "equivalent: no effect beyond +/-3 points" in verdict("count", s)
    assert "inconclusive" in verdict("count", {**s, "tost_p": 0.3})
    assert "better" in verdict("count", {**s, "p_holm": 0.001, "diff": 0.05})


def test_design_table_needs_more_for_three_points_than_for_five():
    plan = resolve_plan(AnalysisConfig(), True)
    t = design_table(500, 5, 5, plan)
    assert 0.01 < t["mde"] < 0.1
    n3, n5 = t["needed"]["3"], t["needed"]["5"]
    assert n5 is not None and (n3 is None or n3["seeds"] * n3["questions"] >= n5["seeds"] * n5["questions"])
    assert t["grid"]["5x500"] < t["grid"]["3x500"] and t["grid"]["5x1000"] < t["grid"]["5x500"]
    assert all(need["seeds"] > 1 for need in t["needed"].values() if need)  # one seed is one adapter


def test_more_replies_and_seeds_shrink_only_the_noise_part_of_a_question():
    plan = resolve_plan(AnalysisConfig(), True)
    one = design_table(500, 5, 1, plan)["mde"]
    five = design_table(500, 5, 5, plan)["mde"]
    no_noise = resolve_plan(AnalysisConfig(planning=PlanningConfig(noise_share=0.0)), True)
    assert five < one  # replies average out the noise part
    assert design_table(500, 5, 5, no_noise)["mde"] == pytest.approx(design_table(500, 5, 1, no_noise)["mde"])


def test_the_planning_command_reads_the_design_a_preset_would_run(capsys):
    from spelling_exp.plan import design, main

    d = design(["+experiment=spelling_lora"])
    assert (d["seeds"], d["questions_per_task"], d["samples"], d["control_trained"]) == (5, 500, 5, True)
    assert d["plan"]["primary_contrast"] == "spelling_vs_placebo"
    assert design(["+experiment=study_cpu"])["seeds"] == 3
    assert design(["+experiment=quickstart_control", "train.seed=0,1,2,3"])["seeds"] == 4
    assert design(["+experiment=quickstart"])["seeds"] == 1
    assert main(["+experiment=spelling_lora"]) == 0
    out = capsys.readouterr().out
    mde = design_table(500, 5, 5, d["plan"])["mde"]
    assert f"{100 * mde:.1f} points" in out and "To detect 3 points" in out


@pytest.mark.parametrize("args, message", [
    (["+experiment=nope"], "experiment/nope"),
    (["eval.n_questions=0"], "eval.n_questions"),
    (["analysis.planning.noise_share=1.5"], "analysis.planning.noise_share"),
])
def test_the_planning_command_refuses_bad_input_in_one_line(args, message, capsys):
    from spelling_exp.plan import main

    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_the_planning_command_imports_no_ml_stack():
    import subprocess
    import sys

    code = ("import sys; from spelling_exp.plan import main; rc = main(['+experiment=spelling_lora']); "
            "assert rc == 0; heavy = {'torch', 'transformers', 'peft', 'trl', 'wandb'} & set(sys.modules); "
            "assert not heavy, heavy")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]


def test_the_cost_plan_counts_what_the_preset_runs():
    from spelling_exp.plan import design

    c = design(["+experiment=spelling_lora"])["cost"]
    # 20000 examples / (16 x 2) per step; 5 seeds x (spelling, placebo, random); one shared base evaluation
    assert c["train_steps_per_arm"] == 625 and c["training_runs"] == 15 and c["evaluation_runs"] == 1 + 5 * 3
    assert c["replies_per_evaluation"] == 500 * 2 * 5 and c["source"] == "FLOPs" and c["gpu_hours"] > 0
    q = design(["+experiment=quickstart"])["cost"]
    assert q["training_runs"] == 1 and q["train_steps_per_arm"] == 80 and q["evaluation_runs"] == 2


def test_stage_plan_is_the_planning_command_and_runs_nothing(tmp_path):
    from helpers import run_cli

    r = run_cli("stage=plan", "+experiment=spelling_lora", f"paths.output_root={tmp_path}/o",
                f"paths.multirun_root={tmp_path}/m")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "15 trainings of 625 steps" in r.stdout and "GPU-hours in all" in r.stdout
    assert not any(tmp_path.iterdir())  # no run dir, no sweep dir
