"""storage/layout.py: one object names every file of a run dir and a sweep dir, and one function
says whether the placebo (control) arm ran."""
import json

import pytest

from spelling_exp.config import Stage
from spelling_exp.storage.layout import METRICS, RunLayout, SweepLayout, control_expected, eval_finished


def _finish(eval_dir):
    eval_dir.mkdir(parents=True)
    (eval_dir / METRICS).write_text(json.dumps({"tasks": {}}))
    return eval_dir


def test_run_layout_names_every_path(tmp_path):
    run = RunLayout(str(tmp_path))  # a str, as configs hold paths
    assert run.root == tmp_path
    assert run.data == tmp_path / "data" and run.data_report == tmp_path / "data" / "report"
    assert [run.eval, run.eval_base, run.eval_adapter, run.eval_control] == [
        tmp_path / d for d in ("eval", "eval_base", "eval_adapter", "eval_control")]
    assert run.adapter == tmp_path / "train" / "adapter"
    assert run.control_adapter == tmp_path / "train_control" / "adapter"
    assert run.comparison == tmp_path / "compare" / "comparison.json"
    assert run.comparison_md == tmp_path / "compare" / "comparison.md"
    assert run.report == tmp_path / "report"
    assert run.resolved_config == tmp_path / "resolved_config.yaml" and run.job_result == tmp_path / "job_result.json"
    assert run.overrides == tmp_path / ".hydra" / "overrides.yaml"


@pytest.mark.parametrize("stage", [s for s in Stage if s != Stage.status])
def test_every_stage_writes_the_dir_named_after_it(stage, tmp_path):
    run = RunLayout(tmp_path)
    assert run.stage_dir(stage) == getattr(run, stage.value) == tmp_path / stage.value


def test_configured_eval_dirs_win_over_the_run_dirs(tmp_path):
    run = RunLayout(tmp_path / "run")
    assert run.base_eval(None) == run.eval_base and run.base_eval(str(tmp_path / "b")) == tmp_path / "b"
    assert run.adapter_eval("") == run.eval_adapter


def test_control_arm_ran_only_once_its_evaluation_finished(tmp_path):
    run = RunLayout(tmp_path)
    assert run.control_eval() is None
    run.eval_control.mkdir()  # an evaluation that started but never wrote metrics.json
    assert run.control_eval() is None and not eval_finished(run.eval_control)
    _finish(tmp_path / "eval_control_done")
    assert run.control_eval(str(tmp_path / "eval_control_done")) == tmp_path / "eval_control_done"
    (run.eval_control / METRICS).write_text("{}")
    assert run.control_eval() == run.eval_control


def test_control_is_expected_when_the_run_trains_or_names_one():
    assert not control_expected(["data", "eval_base", "train", "eval_adapter", "compare", "report"])
    assert control_expected([Stage.data, Stage.train_control])
    assert control_expected(["eval_control"]) and control_expected([], "/some/eval_control")


def test_sweep_layout_lists_job_dirs_in_job_order(tmp_path):
    sweep = SweepLayout(tmp_path)
    assert not sweep.is_sweep()
    for name in ("10", "2", "named", "not_a_job"):
        (tmp_path / name / (".hydra" if name != "not_a_job" else "x")).mkdir(parents=True)
    assert [p.name for p in sweep.job_dirs()] == ["2", "10", "named"] and sweep.is_sweep()
    assert [j.root for j in sweep.jobs()] == sweep.job_dirs()
    assert sweep.multirun_yaml == tmp_path / "multirun.yaml" and sweep.summary_json == tmp_path / "sweep_summary.json"
    assert sweep.comparison_html == tmp_path / "comparison.html"


def test_the_writers_outside_the_layout_agree_with_it():
    """analysis/ and evaluation/ still name these files themselves; they must not drift apart."""
    from spelling_exp.analysis.compare import COMPARISON_FILE
    from spelling_exp.evaluation.recipe import EVAL_FILES
    from spelling_exp.storage.layout import COMPARISON

    assert COMPARISON_FILE == COMPARISON and METRICS in EVAL_FILES
