"""Pipeline stages, looked up by name and imported lazily (keeps --help instant)."""
from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError

STAGE_RUNNERS: dict[str, str] = {
    "data": "spelling_exp.stages.data:run_data_stage",
    "eval": "spelling_exp.stages.eval:run_eval_stage",
    "eval_base": "spelling_exp.stages.eval:run_eval_base_stage",
    "eval_adapter": "spelling_exp.stages.eval:run_eval_adapter_stage",
    "train": "spelling_exp.stages.train:run_train_stage",
    "compare": "spelling_exp.stages.compare:run_compare_stage",
    "report": "spelling_exp.stages.report:run_report_stage",
}


def get_stage(name: str) -> Callable[[Any, Any], Any]:
    if name not in STAGE_RUNNERS:
        raise ConfigError(f"unknown stage '{name}' (known: {', '.join(STAGE_RUNNERS)})")
    module, _, func = STAGE_RUNNERS[name].partition(":")
    return getattr(importlib.import_module(module), func)
