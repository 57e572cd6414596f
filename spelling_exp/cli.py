"""Hydra entrypoint: compose config, check it, run the selected stages.

Kept thin and light: only hydra/omegaconf are imported here; each stage imports its heavy
dependencies when it runs. Exit codes: 0 done; 1 a bug (traceback) or a failed sweep job;
2 bad input or config (one line, nothing written); 3 training interrupted by a preemption
signal after saving a checkpoint; 130 / 143 interrupted by Ctrl-C / SIGTERM (rerun to resume).

``stage=status sweep_dir=...`` is answered before Hydra starts a job (``status_command``): it
composes the config, reads the sweep's job files and prints a table; no model, no run dir.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from spelling_exp.config import Config, Stage, register_configs, secret_keys, selected_stages, unknown_keys
from spelling_exp.errors import ConfigError, Interrupted, SpellingExpError, TrainingInterrupted, raise_interrupted
from spelling_exp.jobs import (
    finished,
    format_status,
    job_config_sha,
    job_dirs,
    sweep_ended,
    sweep_status,
    write_result,
    write_running,
)
from spelling_exp.model.chat import check_thinking_disabled
from spelling_exp.model.resources import gguf_path
from spelling_exp.model.tiny import check_random_init
from spelling_exp.stages.context import RunContext
from spelling_exp.storage.io import atomic_write_text
from spelling_exp.tracking import make_tracker, stable_run_id

log = logging.getLogger("spelling_exp")


def conf_dir() -> str:
    """conf/ of a source checkout (or editable install), else the copy the wheel ships inside the package.

    Absolute: with `python -m`, Hydra would resolve a relative path inside the package.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise RuntimeError(f"spelling_exp: no conf/config.yaml beside {here}; reinstall the package")


register_configs()
# Set once a job starts: Hydra exits 1 on every error, and an error before this point is a
# config that did not compose (bad override, wrong type, invalid choice), which is exit 2.
_job_started = False


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


def scrub_hydra_records(cfg: DictConfig, keys: list[str]) -> None:
    """Hydra records the command line and config (.hydra/, multirun.yaml) before any check can run;
    a refused secret must not stay there."""
    values = [str(OmegaConf.select(cfg, k)) for k in keys]
    hc = HydraConfig.get()
    files = list((Path(hc.runtime.output_dir) / hc.output_subdir).glob("*.yaml")) if hc.output_subdir else []
    if hc.mode == RunMode.MULTIRUN:
        files.append(Path(hc.sweep.dir) / "multirun.yaml")
    for f in files:
        if f.is_file() and any(v in (text := f.read_text()) for v in values):
            for v in values:
                text = text.replace(v, "<redacted>")
            atomic_write_text(f, text)


def validate_config(config: Config, run_dir: Path) -> None:
    """Checks that must fail before any model, tokenizer or file is touched, for the selected stages."""
    from spelling_exp.data.build import validate_data_config
    from spelling_exp.evaluation.questions import validate_eval_config
    from spelling_exp.training.recipe import validate_train_config

    m = config.model
    check_status_request(config)
    check_thinking_disabled(m.family, m.enable_thinking, m.chat_template_kwargs)
    if m.gguf_file:
        gguf_path(m.path, m.gguf_file)
    check_random_init(m)
    stages = set(selected_stages(config))
    evals = {Stage.eval, Stage.eval_base, Stage.eval_adapter, Stage.eval_control}
    if stages & (evals | {Stage.data, Stage.train, Stage.train_control}):
        validate_data_config(config.data, config.template)
    if stages & evals:
        validate_eval_config(config.eval)
        if config.eval.questions_file:  # parse and verify every answer now; the overlap check needs the data
            from spelling_exp.evaluation.external import read_questions_file

            read_questions_file(config.eval)
        from spelling_exp.evaluation.backends import validate_backend_config

        validate_backend_config(config.eval, m, evaluates_adapter=bool(
            stages & {Stage.eval_adapter, Stage.eval_control} or (Stage.eval in stages and config.eval.adapter_path)))
        if config.eval.merge_adapter and str(m.dtype) in ("bfloat16", "float16"):
            raise ConfigError(f"eval.merge_adapter=true with model.dtype={m.dtype} would round the LoRA delta away; "
                              "set model.dtype=float32 or eval.merge_adapter=false")
    adapter = config.eval.adapter_path
    if Stage.eval in stages and adapter and not (Path(adapter) / "adapter_config.json").is_file():
        raise ConfigError(f"eval.adapter_path={adapter}: no LoRA adapter there (adapter_config.json missing)")
    if stages & {Stage.train, Stage.train_control}:
        validate_train_config(config.train, config.lora)
    if Stage.compare in stages and not config.sweep_dir:
        c = config.compare
        for key, path, stage in (("compare.base", c.base, Stage.eval_base), ("compare.adapter", c.adapter,
                                                                          Stage.eval_adapter)):
            if path and not (Path(path) / "metrics.json").is_file():
                raise ConfigError(f"{key}={path}: no finished evaluation there (metrics.json missing)")
            if not path and stage not in stages and not (run_dir / stage / "metrics.json").is_file():
                raise ConfigError(f"stage=compare: no {stage} evaluation in {run_dir}; set {key}=<eval dir> "
                                  f"(and the other of compare.base / compare.adapter), or run {stage} first")
        if c.control and not (Path(c.control) / "metrics.json").is_file():
            raise ConfigError(f"compare.control={c.control}: no finished evaluation there (metrics.json missing)")


def check_status_request(config: Config) -> Path | None:
    """stage=status runs alone, on an existing sweep dir; returns that dir (None without status)."""
    stages = selected_stages(config)
    if Stage.status not in stages:
        return None
    if len(stages) > 1:
        raise ConfigError("stage=status runs alone: python -m spelling_exp stage=status sweep_dir=<sweep dir>")
    if not config.sweep_dir:
        raise ConfigError("stage=status needs sweep_dir=<sweep dir> (e.g. multirun/<experiment>/<sweep_id>)")
    sweep = Path(config.sweep_dir)
    if not sweep.is_dir():
        raise ConfigError(f"sweep_dir={sweep}: no such directory; set it to a sweep dir (multirun/<experiment>/<id>)")
    if not (sweep / "multirun.yaml").is_file() and not job_dirs(sweep):
        raise ConfigError(f"sweep_dir={sweep}: not a sweep dir (no multirun.yaml, no job dirs with .hydra/); "
                          "point it at the dir a multirun wrote (multirun/<experiment>/<id>)")
    return sweep


def status_command(overrides: list[str]) -> int:
    """``stage=status sweep_dir=...``: compose (a bad override is still exit 2), check, print the
    sweep's table. Imports no torch and starts no Hydra job, so it writes nothing."""
    from hydra import compose, initialize_config_dir

    try:
        with initialize_config_dir(config_dir=conf_dir(), version_base="1.3", job_name="status"):
            cfg = compose(config_name="config", overrides=overrides)
        check_composed(cfg)
        sweep = check_status_request(OmegaConf.to_object(cfg))
    except Exception as e:  # a config that does not compose, or a bad sweep_dir: one line, exit 2
        print(f"spelling_exp: error: {e}".strip(), file=sys.stderr)
        return 2
    print(format_status(sweep, sweep_status(sweep)))
    return 0


def _where() -> dict:
    """Where this job runs, for job_result.json: host and pid, the Slurm job, the Ray task."""
    info: dict = {"host": socket.gethostname(), "pid": os.getpid()}
    if os.environ.get("SLURM_JOB_ID"):
        info["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    ray = sys.modules.get("ray")  # imported by a Ray worker before it runs the job; never imported here
    if ray is not None and ray.is_initialized() and (ctx := ray.get_runtime_context()).get_task_id():
        info["ray"] = {"task_id": ctx.get_task_id(), "node_id": ctx.get_node_id(), "worker_id": ctx.get_worker_id()}
    return info


def run_dir_of(cfg: DictConfig) -> Path:
    return Path(cfg.output_dir) if cfg.output_dir else Path(HydraConfig.get().runtime.output_dir)


def _ray_cpus() -> int | None:
    """The CPUs Ray reserved for this job's task (hydra.launcher.cpus_per_job), inside a Ray worker."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized() or not ray.get_runtime_context().get_task_id():
        return None
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
    return max(1, int(cpus)) if cpus else None


def _threads(config: Config) -> int | None:
    """Per-job torch threads: explicit; the CPUs Slurm or Ray allotted; or cores / n_jobs under joblib.

    Oversubscription is catastrophic here, not mildly slower: OpenMP threads spin-wait, and two
    2-thread jobs on 2 cores made a training step ~30x slower.
    """
    if config.num_threads:
        return config.num_threads
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    if ray_cpus := _ray_cpus():  # Ray sets OMP_NUM_THREADS=1 in its workers whatever the task reserved
        return ray_cpus
    if HydraConfig.initialized():
        launcher = HydraConfig.get().launcher
        if "joblib" in str(launcher.get("_target_", "")).lower():
            n_jobs = int(launcher.get("n_jobs") or 1)
            cores = os.cpu_count() or 1
            return max(1, cores // (cores if n_jobs < 0 else min(n_jobs, cores)))
    return None


def _tracker_names(config: Config, run_dir: Path) -> tuple[str, Config]:
    """Run name, and in a multirun a shared W&B group (the sweep) plus tags, unless set in config."""
    if not HydraConfig.initialized():
        return f"{config.experiment_name}-{run_dir.name}", config
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return f"{config.experiment_name}-{run_dir.name}", config
    from dataclasses import replace

    sweep = Path(hc.sweep.dir)
    group = config.logger.group or f"{config.experiment_name}/{sweep.name}"
    tags = list(dict.fromkeys([*config.logger.tags, config.experiment_name, f"sweep:{sweep.name}"]))
    name = f"{config.experiment_name}-{hc.job.override_dirname or hc.job.num}"
    return name, replace(config, logger=replace(config.logger, group=group, tags=tags))


def run(cfg: DictConfig, run_id: str | None = None) -> None:
    from spelling_exp.stages import get_stage

    check_composed(cfg)
    # Stages get plain typed dataclasses: DictConfig attribute access is ~20 us, which
    # dominated the data build when used in per-token loops.
    config: Config = OmegaConf.to_object(cfg)
    run_dir = run_dir_of(cfg)
    validate_config(config, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "resolved_config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    threads = _threads(config)
    if threads:
        import torch

        torch.set_num_threads(threads)
        log.info("torch threads: %d", threads)
    job_name, config = _tracker_names(config, run_dir)
    tracker = make_tracker(config.logger, run_dir, OmegaConf.to_container(cfg, resolve=True), job_name, run_id)
    ctx = RunContext(config, run_dir, tracker)
    exit_code = 1
    try:
        for name in selected_stages(config):
            log.info("stage %s", name)
            get_stage(name)(ctx)
        exit_code = 0
    finally:
        tracker.finish(exit_code)  # one W&B run per job, closed even when a stage fails


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def main(cfg: DictConfig) -> None:
    global _job_started
    _job_started = True
    if secrets := secret_keys(cfg):
        scrub_hydra_records(cfg, secrets)
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = run_dir_of(cfg)
    sha = job_config_sha(cfg)
    stages = selected_stages(cfg)
    if Stage.status in stages:  # reached only through -m or flags (entrypoint answers the plain form)
        return run_status(cfg)
    if multirun and (done := finished(run_dir, sha)):
        log.info("job %s already complete; skipping (delete %s to redo it)", run_dir.name, run_dir / "job_result.json")
        return done
    t0 = time.perf_counter()
    log_file = run_dir / f"{hc.job.name}.log"
    # One W&B run per job: every attempt at this job (requeue, retry, rerun) resumes the same run id.
    run_id = stable_run_id(run_dir, sha, str(cfg.experiment_name)) if str(cfg.logger.name) == "wandb" else None
    where = {**_where(), **({"wandb_run_id": run_id} if run_id else {})}
    if run_dir.exists():  # never create a run dir before the config is checked
        write_running(run_dir, sha, stages, log_file=log_file, **where)
    try:
        run(cfg, run_id)
        write_result(run_dir, sha, "complete", stages, time.perf_counter() - t0, log_file=log_file, **where)
    except (KeyboardInterrupt, Interrupted) as e:
        signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
        name = signal.Signals(signum).name
        if run_dir.exists():
            write_result(run_dir, sha, "interrupted", stages, time.perf_counter() - t0, error=f"interrupted by {name}",
                         log_file=log_file, **where)
        if multirun:
            raise
        print(f"spelling_exp: interrupted by {name}; rerun the same command to resume", file=sys.stderr)
        sys.exit(128 + signum)
    except TrainingInterrupted as e:
        write_result(run_dir, sha, "interrupted", stages, time.perf_counter() - t0, error=str(e), log_file=log_file,
                     **where)
        if multirun:
            log.warning("job %s: %s", hc.job.num, e)
            return None
        print(f"spelling_exp: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except Exception as e:
        user_error = isinstance(e, SpellingExpError)
        message = str(e) if user_error else f"{type(e).__name__}: {e}"
        if run_dir.exists():  # never create a run dir just to say a config was rejected
            write_result(run_dir, sha, "failed", stages, time.perf_counter() - t0, error=message, log_file=log_file,
                         **where)
        if multirun:
            # One failing job must not stop the sweep; the summary at the end lists it with its log.
            log.error("job %s failed: %s", hc.job.num, message, exc_info=not user_error)
            return None
        if not user_error:
            raise
        # One clear line, non-zero exit; user errors are not bugs and get no traceback.
        print(f"spelling_exp: error: {e}", file=sys.stderr)
        sys.exit(2)


def run_status(cfg: DictConfig) -> None:
    try:
        check_composed(cfg)
        sweep = check_status_request(OmegaConf.to_object(cfg))
    except ConfigError as e:
        print(f"spelling_exp: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(format_status(sweep, sweep_status(sweep)))


HYDRA_TRAILER = "\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n"


class _ComposeErrorStream:
    """stderr, minus Hydra's "set HYDRA_FULL_ERROR" trailer under a config that did not compose:
    there Hydra's message is the whole story (a bad override, a wrong type, an invalid choice)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        if text == HYDRA_TRAILER and not _job_started:
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def entrypoint() -> None:
    """``python -m spelling_exp``: Hydra's main; a config that fails to compose exits 2, SIGTERM
    stops with one line (training checkpoints first, see training/trainer.py)."""
    args = sys.argv[1:]
    if any(re.fullmatch(r"\+*stages?=.*\bstatus\b.*", a) for a in args) and not any(a.startswith("-") for a in args):
        sys.exit(status_command(args))
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, raise_interrupted)
    sys.stderr = _ComposeErrorStream(sys.stderr)
    try:
        main()
    except SystemExit as e:
        if e.code == 1 and not (_job_started or sweep_ended()):
            raise SystemExit(2) from None
        raise
