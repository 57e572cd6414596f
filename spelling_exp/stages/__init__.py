"""Pipeline stages: the thin top layer the CLI calls.

Each stage takes the whole config, calls one recipe with the sub-configs it needs, publishes
the result into the run dir (storage/layout.py names its files) and tracks it. Each stage
module also has ``check(config, run_dir)``: that stage's checks, run for every selected stage
before the first one starts, so a bad value is refused before anything is built or written.
Nothing below this package imports from it (an import-linter contract in pyproject.toml checks
that). Stages are imported lazily, so ``--help`` stays instant.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spelling_exp.config import Config, Stage, secret_keys, selected_stages, unknown_keys
from spelling_exp.errors import ConfigError

# In pipeline order, which is also the order their checks run in.
STAGE_RUNNERS: dict[Stage, str] = {
    Stage.data: "spelling_exp.stages.data:run_data_stage",
    Stage.eval: "spelling_exp.stages.eval:run_eval_stage",
    Stage.eval_base: "spelling_exp.stages.eval:run_eval_base_stage",
    Stage.eval_adapter: "spelling_exp.stages.eval:run_eval_adapter_stage",
    Stage.train: "spelling_exp.stages.train:run_train_stage",
    Stage.train_control: "spelling_exp.stages.train:run_train_control_stage",
    Stage.eval_control: "spelling_exp.stages.eval:run_eval_control_stage",
    Stage.train_random: "spelling_exp.stages.train:run_train_random_stage",
    Stage.eval_random: "spelling_exp.stages.eval:run_eval_random_stage",
    Stage.compare: "spelling_exp.stages.compare:run_compare_stage",
    Stage.report: "spelling_exp.stages.report:run_report_stage",
}
# Stages that build (or reuse) the data artifacts before their own work (RunContext.prepare_data),
# so the data stage's checks are theirs too.
BUILDS_DATA = frozenset({Stage.data, Stage.eval, Stage.eval_base, Stage.eval_adapter, Stage.eval_control,
                         Stage.train, Stage.train_control, Stage.train_random, Stage.eval_random})


def get_stage(name: str) -> Callable[[Any], Any]:
    module, _, func = STAGE_RUNNERS[Stage(name)].partition(":")
    return getattr(importlib.import_module(module), func)


def check_model(config: Config) -> None:
    """The model config, whatever the stages: thinking mode stays off, a GGUF file exists, random
    weights are described completely."""
    from spelling_exp.model.chat import check_thinking_disabled
    from spelling_exp.model.resources import gguf_path
    from spelling_exp.model.tiny import check_random_init

    m = config.model
    check_thinking_disabled(m.family, m.enable_thinking, m.chat_template_kwargs)
    if m.gguf_file:
        gguf_path(m.path, m.gguf_file)
    elif not str(m.path).startswith("random:"):
        local = Path(str(m.path)).expanduser()
        if local.is_dir() and not (local / "config.json").is_file():
            raise ConfigError(f"model.path={m.path}: a directory with no model in it (no config.json); point it at "
                              "a model dir (config.json + weights), a hub id, or set model.gguf_file to a GGUF there")
        if not local.exists() and str(m.path).startswith(("/", "./", "../", "~")):
            raise ConfigError(f"model.path={m.path}: no such directory; point it at a model dir or use a hub id")
    check_random_init(m)


def check_writable_dir(key: str, path: str | Path) -> None:
    """``path`` exists as a writable dir, or can be created: its nearest existing ancestor is a dir
    this user may write (a read-only mount, another user's dir or a file in the way is refused)."""
    import os

    p = Path(path).expanduser()
    probe = p
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={path}: {probe} is a file, not a directory; point {key} at a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={path}: {probe} is not writable (a read-only mount or another user's dir); "
                          f"point {key} at a writable directory (SPELLING_EXP_CACHE_DIR for the cache)")


def check(config: Config, run_dir: Path) -> None:
    """Every selected stage's checks, before any stage runs. Pure: reads config and files, writes
    nothing, loads no model; raises a SpellingExpError (one line naming the key and the fix)."""
    stages = {Stage(s) for s in selected_stages(config)}
    check_model(config)
    check_writable_dir("paths.cache_dir", config.paths.cache_dir)
    modules = ["spelling_exp.stages.data"] if stages & BUILDS_DATA else []
    modules += [STAGE_RUNNERS[s].partition(":")[0] for s in STAGE_RUNNERS if s in stages]
    for module in dict.fromkeys(modules):  # eval_base and eval_adapter share one module, one check
        importlib.import_module(module).check(config, run_dir)


def check_composed(cfg: DictConfig) -> None:
    """What Hydra composes without complaint but must not run: secrets in config, unknown `+keys`."""
    secrets = secret_keys(cfg)
    if secrets:
        if secrets[0].endswith("api_key_env"):
            raise ConfigError(f"{secrets[0]}: must be the NAME of the environment variable that holds the key "
                              "(e.g. OPENAI_API_KEY), never the key itself; export the key and name its variable")
        raise ConfigError(f"{secrets[0]}: secrets are read from the environment only (WANDB_API_KEY for W&B, "
                          "HF_TOKEN for the hub), never from config; remove the override")
    unknown = unknown_keys(cfg)
    if unknown:
        raise ConfigError(f"unknown key {unknown[0]}: spelling_exp/config.py has no such setting")


def validate(cfg: DictConfig, run_dir: Path) -> Config:
    """Every check before any work: the composed config, then each selected stage's own check
    (stages/*.py::check). Pure: writes nothing, loads no model; raises a SpellingExpError, one line.
    Returns the typed config the stages run on."""
    check_composed(cfg)
    # Stages get plain typed dataclasses: DictConfig attribute access is ~20 us, which
    # dominated the data build when used in per-token loops.
    config: Config = OmegaConf.to_object(cfg)
    check(config, run_dir)
    return config
