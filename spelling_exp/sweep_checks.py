"""Start of a multirun: every job's config checked before any job starts.

``CheckEveryJob`` composes each job's config (the sweeper's parameters and the command line's sweep
overrides, expanded as the basic sweeper expands them) and runs the checks each job would run first
(stages.validate): one bad value anywhere in the sweep is refused in one line, exit 2, before any
job does any work or writes anything. Apart from sweep.py because the checks reach the stages (which
import the ML stack lazily), and sweep.py must stay light for Hydra's start-up.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from spelling_exp.errors import ConfigError, SpellingExpError


def job_overrides(config: DictConfig) -> list[list[str]]:
    """Every job's overrides, in launch order, as the basic sweeper will expand them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = config.hydra.sweeper.get("params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    overrides = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader()).parse_overrides(args)
    return [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def check_every_job(config: DictConfig) -> None:
    """stages.validate on each job's composed config; the first refusal is a ConfigError naming the job."""
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import open_dict, read_write

    from spelling_exp.stages import validate

    loader = GlobalHydra.instance().config_loader()
    for n, overrides in enumerate(job_overrides(config)):
        cfg = loader.load_sweep_config(config, overrides)
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        try:
            validate(cfg, Path(config.hydra.sweep.dir) / str(n))
        except SpellingExpError as e:
            swept = " ".join(o for o in overrides if o.split("=", 1)[0] in _swept_keys(config))
            raise ConfigError(f"sweep job {n} ({swept or ' '.join(overrides)}): {e}") from None


def _swept_keys(config: DictConfig) -> set[str]:
    params = config.hydra.sweeper.get("params") or {}
    keys = set(params)
    keys |= {o.split("=", 1)[0] for o in config.hydra.overrides.task if "," in o.split("=", 1)[-1] or "range(" in o}
    return keys


class CheckEveryJob(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_every_job(config)
        except SpellingExpError as e:
            print(f"spelling_exp: error: {e}", file=sys.stderr)
            sys.exit(2)  # before any job: nothing ran, nothing was written
