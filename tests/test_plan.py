"""analysis/plan.py: the analysis plan is declared before the run, checked up front, hashed, and
followed: a primary contrast whose arm is missing is refused, never replaced."""
from __future__ import annotations

import pytest

from spelling_exp.analysis.compare import compare_arms, verdict
from spelling_exp.analysis.plan import check_plan, design_table, resolve_plan
from spelling_exp.config import AnalysisConfig
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
