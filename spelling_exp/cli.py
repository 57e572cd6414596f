"""Hydra entrypoint: compose config, check it, run the selected stages.

Kept thin and light: only hydra/omegaconf are imported here; each stage imports its heavy
dependencies when it runs.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from .chat import check_thinking_disabled
from .config import Config, register_configs, selected_stages
from .context import RunContext
from .errors import SpellingExpError
from .io import atomic_write_text
from .tracking import make_tracker

log = logging.getLogger("spelling_exp")
# Absolute path: with `python -m`, Hydra would resolve a relative path inside the package.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
register_configs()


def validate_config(cfg: DictConfig) -> None:
    """Checks that must fail before any model, tokenizer or file is touched."""
    from .stages import get_stage

    check_thinking_disabled(cfg.model.family, cfg.model.enable_thinking, cfg.model.chat_template_kwargs)
    for name in selected_stages(cfg):
        get_stage(name)


def run_dir_of(cfg: DictConfig) -> Path:
    return Path(cfg.output_dir) if cfg.output_dir else Path(HydraConfig.get().runtime.output_dir)


def run(cfg: DictConfig) -> None:
    from .stages import get_stage

    validate_config(cfg)
    run_dir = run_dir_of(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "resolved_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    # Stages get plain typed dataclasses: DictConfig attribute access is ~20 us, which
    # dominated the data build when used in per-token loops.
    config: Config = OmegaConf.to_object(cfg)
    job = HydraConfig.get().job.name if HydraConfig.initialized() else "spelling_exp"
    tracker = make_tracker(config, run_dir, OmegaConf.to_container(cfg, resolve=True), f"{job}-{run_dir.name}")
    ctx = RunContext(config, run_dir, tracker)
    exit_code = 1
    try:
        for name in selected_stages(config):
            log.info("stage %s", name)
            ctx.results[name] = get_stage(name)(ctx)
        exit_code = 0
    finally:
        tracker.finish(exit_code)  # one W&B run per job, closed even when a stage fails


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def main(cfg: DictConfig) -> None:
    try:
        run(cfg)
    except SpellingExpError as e:
        # One clear line, non-zero exit; user errors are not bugs and get no traceback.
        print(f"spelling_exp: error: {e}", file=sys.stderr)
        sys.exit(getattr(e, "exit_code", 2))
