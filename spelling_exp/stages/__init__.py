"""Pipeline stages: the thin top layer the CLI calls.

Each stage takes the whole config, calls one recipe with the sub-configs it needs, publishes
the result into the run dir and tracks it. Nothing below this package imports from it (an
import-linter contract in pyproject.toml checks that). Stages are imported lazily, so
``--help`` stays instant.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from spelling_exp.config import Stage

STAGE_RUNNERS: dict[Stage, str] = {
    Stage.data: "spelling_exp.stages.data:run_data_stage",
    Stage.eval: "spelling_exp.stages.eval:run_eval_stage",
    Stage.eval_base: "spelling_exp.stages.eval:run_eval_base_stage",
    Stage.eval_adapter: "spelling_exp.stages.eval:run_eval_adapter_stage",
    Stage.train: "spelling_exp.stages.train:run_train_stage",
    Stage.train_control: "spelling_exp.stages.train:run_train_control_stage",
    Stage.eval_control: "spelling_exp.stages.eval:run_eval_control_stage",
    Stage.compare: "spelling_exp.stages.compare:run_compare_stage",
    Stage.report: "spelling_exp.stages.report:run_report_stage",
}


def get_stage(name: str) -> Callable[[Any], Any]:
    module, _, func = STAGE_RUNNERS[Stage(name)].partition(":")
    return getattr(importlib.import_module(module), func)
