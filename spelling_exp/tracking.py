"""Experiment tracking: one W&B run per Hydra job, or nothing (logger=none).

Mode: WANDB_MODE from the environment wins; else an API key (WANDB_API_KEY) means online;
else ``logger.mode`` (offline by default). Every W&B file stays inside the run dir (WANDB_DIR,
cache, data and config dirs all point there). The logged config has secret-looking keys
removed. ``finish`` is always called, with a non-zero exit code when the job failed.

One W&B run per job, across requeues and reruns: the run id is derived from the job's run dir
(sweep dir + job) and its config hash (``stable_run_id``), and the run is resumed when it exists.
A Slurm requeue, a Ray retry or a rerun of an unfinished sweep job logs to the same run (offline:
one ``offline-run-*`` dir per attempt, all with that id; ``wandb sync`` uploads them into one run,
in order). A finished job that a rerun skips creates no run at all (cli.py returns before this).
"""
from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

from spelling_exp.config import SECRET_KEYS, LoggerConfig, LoggerName
from spelling_exp.storage.io import sha256_text

log = logging.getLogger(__name__)


def scrub(obj: Any) -> Any:
    """Config with the values of credential keys replaced (matched by exact name, so settings such
    as `tokens` or `max_new_tokens` stay visible). The CLI refuses such keys anyway; this is the
    second line of defence for anything logged."""
    if isinstance(obj, dict):
        return {k: ("<redacted>" if str(k).lower() in SECRET_KEYS else scrub(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


def stable_run_id(run_dir: Path, config_sha: str, prefix: str = "") -> str:
    """The W&B run id of a job: the same for every attempt at the same job (same run dir, same
    config), different for anything else. ``<prefix>-<16 hex>``, within W&B's allowed characters."""
    digest = sha256_text(f"{Path(run_dir).resolve()}\n{config_sha}")[:16]
    p = re.sub(r"[^A-Za-z0-9_-]+", "-", prefix).strip("-")[:40]
    return f"{p}-{digest}" if p else digest


class Tracker:
    """No-op tracker (logger=none); the interface every stage uses."""
    run_dir: Path | None = None
    run_id: str | None = None

    def log(self, data: dict[str, Any], step: int | None = None) -> None: ...
    def summary(self, data: dict[str, Any]) -> None: ...
    def table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None: ...
    def artifact(self, path: Path, name: str, kind: str) -> None: ...
    def finish(self, exit_code: int = 0) -> None: ...


class WandbTracker(Tracker):
    def __init__(self, cfg: Any, run_dir: Path, config: dict[str, Any], job_name: str, run_id: str | None = None):
        wdir = run_dir / "wandb"
        for sub in ("", ".cache", ".data", ".config", ".artifacts"):
            (wdir / sub).mkdir(parents=True, exist_ok=True)
        os.environ["WANDB_DIR"] = str(run_dir)  # wandb writes <WANDB_DIR>/wandb/...
        os.environ["WANDB_CACHE_DIR"] = str(wdir / ".cache")
        os.environ["WANDB_DATA_DIR"] = str(wdir / ".data")
        os.environ["WANDB_CONFIG_DIR"] = str(wdir / ".config")
        os.environ["WANDB_ARTIFACT_DIR"] = str(wdir / ".artifacts")
        os.environ.setdefault("WANDB_SILENT", "true")
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else cfg.mode)
        import wandb

        self.wandb = wandb
        self.run = wandb.init(project=cfg.project, entity=cfg.entity, group=cfg.group, tags=list(cfg.tags) or None,
                              name=cfg.run_name or job_name, config=scrub(config), dir=str(run_dir), mode=mode,
                              reinit="finish_previous", id=run_id, resume="allow" if run_id else None)
        # Training curves use their own x-axis, so stages logging before/after training never
        # collide with W&B's monotonic step counter.
        for arm in ("train", "train_control"):  # the spelling adapter and the placebo control
            self.run.define_metric(f"{arm}/global_step")
            self.run.define_metric(f"{arm}/*", step_metric=f"{arm}/global_step")
        self.run_dir = run_dir
        self.run_id = self.run.id
        self.mode = mode
        log.info("W&B run %s (%s) in %s", self.run.id, mode, wdir)

    def log(self, data: dict[str, Any], step: int | None = None) -> None:
        self.run.log(data, step=step)

    def summary(self, data: dict[str, Any]) -> None:
        self.run.summary.update(data)

    def table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.run.log({name: self.wandb.Table(columns=columns, data=rows)})

    def artifact(self, path: Path, name: str, kind: str) -> None:
        art = self.wandb.Artifact(name=re.sub(r"[^\w.-]", "-", name), type=kind)
        (art.add_dir if path.is_dir() else art.add_file)(str(path))
        self.run.log_artifact(art)

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def make_tracker(logger: LoggerConfig, run_dir: Path, config: dict[str, Any], job_name: str,
                 run_id: str | None = None) -> Tracker:
    if logger.name == LoggerName.wandb:
        return WandbTracker(logger, run_dir, config, job_name, run_id)
    return Tracker()
