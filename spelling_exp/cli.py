"""Hydra entrypoint: compose config, check it, run the selected stages.

Kept thin and light: only hydra/omegaconf are imported here; each stage imports its heavy
dependencies when it runs, and checks its own config (stages/*.py::check, run by ``validate``
before the first stage). Exit codes: 0 done; 1 a bug (traceback) or a failed sweep job;
2 bad input or config (one line, nothing written); 3 training interrupted by a preemption
signal after saving a checkpoint; 130 / 143 interrupted by Ctrl-C / SIGTERM (rerun to resume).

``stage=status sweep_dir=...`` is status.py's command; it is answered before Hydra starts a job
(``status_command``): no model, no run dir.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from spelling_exp import status
from spelling_exp.config import Config, Stage, conf_dir, register_configs, secret_keys, selected_stages
from spelling_exp.errors import ConfigError, Interrupted, SpellingExpError, TrainingInterrupted, raise_interrupted
from spelling_exp.jobs import finished, job_config_sha, write_result, write_running
from spelling_exp.stages import check_composed, validate
from spelling_exp.stages.context import RunContext
from spelling_exp.storage.io import atomic_write_text
from spelling_exp.storage.layout import RunLayout, SweepLayout
from spelling_exp.tracking import make_tracker, stable_run_id

log = logging.getLogger("spelling_exp")


register_configs()


def scrub_hydra_records(cfg: DictConfig, keys: list[str]) -> None:
    """Hydra records the command line and config (.hydra/, multirun.yaml) before any check can run;
    a refused secret must not stay there."""
    values = [str(OmegaConf.select(cfg, k)) for k in keys]
    hc = HydraConfig.get()
    files = list((Path(hc.runtime.output_dir) / hc.output_subdir).glob("*.yaml")) if hc.output_subdir else []
    if hc.mode == RunMode.MULTIRUN:
        files.append(SweepLayout(hc.sweep.dir).multirun_yaml)
    for f in files:
        if f.is_file() and any(v in (text := f.read_text()) for v in values):
            for v in values:
                text = text.replace(v, "<redacted>")
            atomic_write_text(f, text)


def status_requested(args: list[str]) -> bool:
    """``stage=status`` (or ``stages=[..., status]``) on a plain command line: read with Hydra's own
    override grammar, so it is answered without a Hydra job (which would create a run dir)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    if any(a.startswith("-") for a in args):  # -m, --cfg, ...: Hydra's; main() answers status there
        return False
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except OverrideParseException:
        return False  # Hydra reports it
    for o in overrides:
        if o.key_or_group in ("stage", "stages") and not o.is_sweep_override():
            value = o.value()
            if Stage.status in (value if isinstance(value, list) else [value]):
                return True
    return False


def status_command(overrides: list[str]) -> int:
    """``stage=status sweep_dir=...``: compose (a bad override is still exit 2), check, print the
    sweep's table (status.py). Imports no torch and starts no Hydra job, so it writes nothing."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=conf_dir(), version_base="1.3", job_name="status"):
            cfg = compose(config_name="config", overrides=overrides)
        check_composed(cfg)
        sweep = status.check(OmegaConf.to_object(cfg))
    except (HydraException, SpellingExpError) as e:  # a config that does not compose, a bad sweep_dir
        print(f"spelling_exp: error: {e}".strip(), file=sys.stderr)
        return 2
    print(status.table(sweep))
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
    if (n_jobs := _joblib_n_jobs()) is not None:
        cores = os.cpu_count() or 1
        return max(1, cores // (cores if n_jobs < 0 else min(n_jobs, cores)))
    return None


def _joblib_n_jobs() -> int | None:
    """hydra.launcher.n_jobs when this job was launched by the joblib launcher, else None. Known by
    the launcher config's type (the plugin's structured config), not by its name."""
    if not HydraConfig.initialized():
        return None
    try:
        from hydra_plugins.hydra_joblib_launcher.config import JobLibLauncherConf
    except ImportError:  # the plugin is not installed: this job was not launched by it
        return None
    launcher = HydraConfig.get().launcher
    if not issubclass(OmegaConf.get_type(launcher) or type(None), JobLibLauncherConf):
        return None
    return int(launcher.n_jobs or 1)


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

    run_dir = run_dir_of(cfg)
    config = validate(cfg, run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RunLayout(run_dir).resolved_config, OmegaConf.to_yaml(cfg, resolve=True))
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
    if secrets := secret_keys(cfg):
        scrub_hydra_records(cfg, secrets)
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    run_dir = run_dir_of(cfg)
    sha = job_config_sha(cfg)
    stages = selected_stages(cfg)
    if Stage.status in stages:  # reached only through -m or flags (entrypoint answers the plain form)
        return answer_status(cfg)
    if multirun and (done := finished(run_dir, sha)):
        log.info("job %s already complete; skipping (delete %s to redo it)", run_dir.name,
                 RunLayout(run_dir).job_result)
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
        if disk_full(e):  # not a bug: one line, and the rerun resumes (atomic writes left nothing half-done)
            e = ConfigError(f"no space left on the device ({e}); free space, or point output_dir / "
                            "paths.cache_dir (SPELLING_EXP_CACHE_DIR) at a disk with room, and rerun the same "
                            "command: finished stages and cache entries are kept")
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


def disk_full(e: BaseException) -> bool:
    """ENOSPC, also when a library (the tokenizers' Rust writer) reports it as a plain Exception."""
    import errno

    return (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left on device" in str(e)


def answer_status(cfg: DictConfig) -> None:
    try:
        check_composed(cfg)
        sweep = status.check(OmegaConf.to_object(cfg))
    except SpellingExpError as e:
        print(f"spelling_exp: error: {e}", file=sys.stderr)
        sys.exit(2)
    print(status.table(sweep))


HYDRA_TRAILER = "\nSet the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.\n"


def _hydra_refused(exc: BaseException | None) -> bool:
    """A HydraException is Hydra refusing the command line or the config (a bad override, a wrong
    type, an invalid choice, a missing config group option): bad input. Nothing of ours raises one."""
    from hydra.errors import HydraException

    return isinstance(exc, HydraException)


MERGE_ERROR = "Error merging override "


class _ComposeErrorStream:
    """stderr, minus Hydra's "set HYDRA_FULL_ERROR" trailer under a config that did not compose:
    there Hydra's message is the whole story. Hydra writes the trailer while it handles the
    error, so the error is the one being handled."""

    def __init__(self, stream):
        self._stream = stream
        self._merge: list[str] | None = None  # an "Error merging override" message being collected

    def write(self, text: str) -> int:
        refused = _hydra_refused(sys.exc_info()[1])
        if text.startswith(MERGE_ERROR) and refused:
            self._merge = [text]
            return len(text)
        if self._merge is not None and text != HYDRA_TRAILER:
            self._merge.append(text)
            return len(text)
        if text == HYDRA_TRAILER and refused:
            self._flush_merge()
            return len(text)
        return self._stream.write(text)

    def _flush_merge(self) -> None:
        """"Error merging override k=v", the reason, then OmegaConf's internals (full_key,
        reference_type, object_type): written as one line, the override and the reason."""
        if self._merge is None:
            return
        lines = [line for line in "".join(self._merge).splitlines() if line.strip() and not line.startswith(" ")]
        self._merge = None
        override, reason = lines[0][len(MERGE_ERROR):].strip(), " ".join(lines[1:])
        self._stream.write(f"spelling_exp: error: {override}: {reason}\n")

    def flush(self) -> None:
        self._flush_merge()
        self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def entrypoint() -> None:
    """``python -m spelling_exp``: Hydra's main; a config that fails to compose exits 2, SIGTERM
    stops with one line (training checkpoints first, see training/trainer.py)."""
    args = sys.argv[1:]
    if status_requested(args):
        sys.exit(status_command(args))
    if "stage=plan" in args:  # the design and its cost: composed and checked, nothing run (plan.py)
        from spelling_exp.plan import main as plan_main

        sys.exit(plan_main([a for a in args if a != "stage=plan"]))
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, raise_interrupted)
    sys.stderr = _ComposeErrorStream(sys.stderr)
    try:
        main()
    except SystemExit as e:
        # Hydra exits 1 on every error, from inside its handler: the error it handled is the
        # exception's context. A failed sweep job (sweep.py) exits 1 with none: it stays 1.
        if e.code == 1 and _hydra_refused(e.__context__):
            raise SystemExit(2) from None
        raise
