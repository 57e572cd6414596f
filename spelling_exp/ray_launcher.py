"""``hydra/launcher=ray``: each sweep job as one Ray task, on a Ray cluster or a local Ray instance.

Built on hydra-ray-launcher (the optional extra ``pip install -e ".[ray]"``), with what a sweep of
this project needs on a real cluster:

- **Where.** ``ray.init.address``: ``null`` (and no ``RAY_ADDRESS``) starts a local Ray instance
  for the sweep, on loopback; ``auto`` joins the cluster this machine belongs to (``ray start``);
  ``ray://host:10001`` a remote one through Ray Client. Arguments that only apply to a new local
  instance (object store size, no dashboard) are passed only then: Ray refuses them when joining.
- **Per-job resources** (``cpus_per_job``, ``gpus_per_job``, ``mem_gb``) are reserved for each
  job's task; torch then uses the reserved CPUs as threads (cli.py::_threads), since Ray sets
  ``OMP_NUM_THREADS=1`` in its workers. ``max_calls=1``: every job gets a fresh worker process.
- **Checked before any job starts** (exit 2, one line naming the setting): the extra is installed;
  the cluster answers; some node can hold one job's resources; and every node sees and can write
  the cache root and the sweep dir, which must be storage all nodes share (a file the driver writes
  there must be visible from a probe task on each node). ``check_cluster=false`` skips the last two
  (an autoscaling cluster whose nodes are not up yet).
- **Paths and environment.** Relative paths (cache root, sweep dir) are made absolute in the driver,
  and the project's non-secret variables set here (``FORWARD_ENV``) travel to the workers;
  secrets (``WANDB_API_KEY``, ``HF_TOKEN``) never do: give them to ``ray start`` on each node.
- **Failures stay per job.** A job's own error is recorded by the job (job_result.json) like under
  every launcher. A job interrupted by a preemption signal (training checkpointed, exit 3) is
  retried by Ray up to ``max_requeues`` times and resumes from its checkpoint, into the same W&B
  run. A worker that dies (OOM, node lost) after Ray's own retries is recorded as a failed job; the
  sweep goes on and its summary lists it.

Imports stay light (no torch, no ray at import time): Hydra instantiates this class at start-up.
"""
from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from spelling_exp.jobs import RESULT, write_result
from spelling_exp.storage.io import read_json

log = logging.getLogger(__name__)

# The project's own environment (see .env.example) that a worker needs to run a job as this
# driver would. Secrets are left out on purpose: Ray stores a task's runtime_env in its GCS.
FORWARD_ENV = ("SPELLING_EXP_CACHE_DIR", "WANDB_MODE", "HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_HOME")
# Only for a local instance this launcher starts (Ray refuses them when joining a cluster).
LOCAL_ONLY_INIT = {"object_store_memory": 200_000_000, "include_dashboard": False}


class JobInterrupted(Exception):
    """Raised inside the Ray task when the job stopped on a preemption signal: Ray retries it."""


def fail(message: str) -> None:
    """Bad input found by the launcher: one line, exit 2, no job started."""
    print(f"spelling_exp: error: {message}", file=sys.stderr)
    sys.exit(2)


def _run_job_in_worker(hydra_context: HydraContext, sweep_config: DictConfig, task_function: TaskFunction,
                       singleton_state: dict[Any, Any], job_dir: str) -> JobReturn:
    """The Ray task: hydra-ray-launcher's job runner, then Ray's retry on a preemption."""
    from hydra_plugins.hydra_ray_launcher._launcher_util import _run_job

    ret = _run_job(hydra_context, sweep_config, task_function, singleton_state)
    if (wandb := sys.modules.get("wandb")) is not None:  # before Ray ends this worker (max_calls=1), or
        wandb.teardown()  # W&B's exit hook finds its service gone and prints a traceback
    result = Path(job_dir) / RESULT
    if result.is_file() and read_json(result).get("status") == "interrupted":
        raise JobInterrupted(read_json(result).get("error") or "interrupted")
    return ret


def _probe_storage(paths: dict[str, str], token: str) -> dict[str, str]:
    """On one node: for each setting, does this node see the driver's token file, and can it write?"""
    import socket
    import tempfile

    problems = {}
    for key, path in paths.items():
        d = Path(path)
        if not (d / token).is_file():
            problems[key] = f"node {socket.gethostname()} does not see {d} as the driver does (not shared storage)"
            continue
        try:
            with tempfile.NamedTemporaryFile(dir=d, prefix=".ray-write-probe-"):
                pass
        except OSError as e:
            problems[key] = f"node {socket.gethostname()} cannot write to {d} ({e.strerror or e})"
    return problems


def _on_loopback(address: str) -> bool:
    """Does this address (auto: the cluster ``ray start`` last started on this machine) point at 127.x?"""
    if address == "auto":
        try:  # where `ray start` records the newest cluster of this machine
            tmp = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"  # as Ray picks it
            address = (Path(tmp) / "ray" / "ray_current_cluster").read_text()
        except OSError:
            return False
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host.startswith("127.") or host in ("localhost", "::1")


def _plain(node: Any) -> dict[str, Any]:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node or {})


def _absolute_cache_dir(cfg: DictConfig) -> str | None:
    """paths.cache_dir resolved here (env, HOME) and made absolute; None when it depends on the job's
    own run dir (${hydra:runtime.output_dir}/...), which only the job can resolve."""
    raw = OmegaConf.to_container(cfg.paths, resolve=False).get("cache_dir")
    if "${hydra:" in str(raw):
        return None
    return str(Path(str(OmegaConf.select(cfg, "paths.cache_dir"))).expanduser().absolute())


class RayLauncher(Launcher):
    def __init__(self, ray: DictConfig, cpus_per_job: Any = 2, gpus_per_job: Any = 0, mem_gb: Any = None,
                 max_requeues: int = 3, check_cluster: bool = True) -> None:
        self.ray_cfg = ray
        self.resources = {"cpus_per_job": cpus_per_job, "gpus_per_job": gpus_per_job, "mem_gb": mem_gb}
        self.max_requeues = max_requeues
        self.check_cluster = check_cluster
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    # ------------------------------------------------------------------ checks
    def _remote_options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        for key, ray_key, scale in (("cpus_per_job", "num_cpus", 1), ("gpus_per_job", "num_gpus", 1),
                                    ("mem_gb", "memory", 1024 ** 3)):
            value = self.resources[key]
            if value in (None, "", "null"):
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                fail(f"hydra.launcher.{key}={value}: not a number")
            if number < 0 or (key == "cpus_per_job" and number <= 0):
                fail(f"hydra.launcher.{key}={value}: must be {'> 0' if key == 'cpus_per_job' else '>= 0'}")
            opts[ray_key] = int(number * scale) if key == "mem_gb" else number
        remote = _plain(self.ray_cfg.get("remote"))
        return {"max_calls": 1, **opts, **remote, "max_retries": int(self.max_requeues),
                "retry_exceptions": [JobInterrupted]}

    def _check_resources(self, ray: Any, opts: dict[str, Any]) -> None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        want = {"CPU": ("cpus_per_job", opts.get("num_cpus", 1)), "GPU": ("gpus_per_job", opts.get("num_gpus", 0)),
                "memory": ("mem_gb", opts.get("memory", 0))}
        for res, (key, amount) in want.items():
            if not amount:
                continue
            largest = max((n["Resources"].get(res, 0) for n in nodes), default=0)
            if largest < amount:
                unit = (lambda v: f"{v / 1024 ** 3:.1f} GB") if res == "memory" else (lambda v: f"{v:g}")
                fail(f"hydra.launcher.{key}={self.resources[key]}: no node of the Ray cluster has {unit(amount)} "
                     f"{res} (largest: {unit(largest)}); lower it, or add bigger nodes "
                     "(hydra.launcher.check_cluster=false if they are still starting)")

    def _check_storage(self, ray: Any, paths: dict[str, str]) -> None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        token = f".ray-probe-{uuid.uuid4().hex}"
        for key, path in paths.items():
            try:
                Path(path).mkdir(parents=True, exist_ok=True)
                (Path(path) / token).write_text("spelling-exp storage probe\n")
            except OSError as e:
                fail(f"{key}={path}: cannot write there ({e.strerror or e}); choose a directory on storage every "
                     "Ray node mounts at the same path")
        try:
            probe = ray.remote(num_cpus=0, max_retries=0)(_probe_storage)
            nodes = [n["NodeID"] for n in ray.nodes() if n.get("Alive")]
            answers = ray.get([probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False))
                               .remote(paths, token) for node in nodes], timeout=120)
        finally:
            for path in paths.values():
                (Path(path) / token).unlink(missing_ok=True)
        for problems in answers:
            for key, problem in problems.items():
                hint = ("SPELLING_EXP_CACHE_DIR=/shared/..." if key == "paths.cache_dir"
                        else "hydra.sweep.dir=/shared/...")
                fail(f"{key}={paths[key]}: {problem}; put it on storage every Ray node mounts at the same path "
                     f"({hint})")

    # ------------------------------------------------------------------ launch
    def launch(self, job_overrides: Any, initial_job_idx: int) -> list[JobReturn]:
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        from hydra.core.utils import configure_log, setup_globals

        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        opts = self._remote_options()
        init = _plain(self.ray_cfg.get("init"))
        address = init.get("address") or os.environ.get("RAY_ADDRESS")
        local = not address
        if local or _on_loopback(str(address)):
            # A local instance, or a head node on 127.0.0.1 (scripts/ray/start_ray.sh): without this,
            # Ray advertises this machine's routable address and then waits for a raylet there.
            # Ray reads it when it is imported, so it is set before the first `import ray`.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        if local:
            init = {**LOCAL_ONLY_INIT, **init}
        try:  # a missing extra is bad input, not a bug
            import hydra_plugins.hydra_ray_launcher._launcher_util  # noqa: F401
            import ray
        except ImportError as e:
            fail(f"hydra/launcher=ray needs the Ray extra ({e.name} is missing): pip install -e '.[ray]' "
                 "(scripts/setup.sh installs it)")
        env = {k: os.environ[k] for k in FORWARD_ENV if os.environ.get(k)}
        runtime_env = dict(init.pop("runtime_env", None) or {})
        runtime_env["env_vars"] = {**env, **(runtime_env.get("env_vars") or {})}
        if not ray.is_initialized():
            try:
                ray.init(**init, runtime_env=runtime_env)
            except (ConnectionError, ValueError, RuntimeError) as e:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                fail(f"hydra.launcher.ray.init.address={address}: "
                     f"cannot connect to a Ray cluster ({first}); start one (ray start --head) or set "
                     "hydra.launcher.ray.init.address=null for a local instance")
        sweep_dir = Path(str(self.config.hydra.sweep.dir)).absolute()
        shared = {"hydra.sweep.dir": str(sweep_dir)}
        if (cache_dir := _absolute_cache_dir(self.config)) is not None:
            shared["paths.cache_dir"] = cache_dir
        if self.check_cluster:
            self._check_resources(ray, opts)
            self._check_storage(ray, shared)
        else:
            sweep_dir.mkdir(parents=True, exist_ok=True)
        where = "a local Ray instance" if local else f"the Ray cluster at {address}"
        log.info(f"Ray launcher: {len(job_overrides)} jobs on {where} "
                 f"({ {k: v for k, v in opts.items() if k in ('num_cpus', 'num_gpus', 'memory')} } each), "
                 f"sweep dir {sweep_dir}")
        remote = ray.remote(**{k: v for k, v in opts.items()})(_run_job_in_worker)
        runs = []
        for idx, overrides in enumerate(job_overrides):
            idx = initial_job_idx + idx
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(sweep_config):
                sweep_config.hydra.job.id = f"ray_job_{idx}"
                sweep_config.hydra.job.num = idx
                # Resolved here, so every node uses the driver's paths (not its own cwd, HOME or env).
                sweep_config.hydra.sweep.dir = str(sweep_dir)
                if (job_cache := _absolute_cache_dir(sweep_config)) is not None:
                    sweep_config.paths.cache_dir = job_cache
            job_dir = sweep_dir / str(OmegaConf.select(sweep_config, "hydra.sweep.subdir"))
            runs.append((idx, overrides, job_dir, remote.remote(self.hydra_context, sweep_config, self.task_function,
                                                                Singleton.get_state(), str(job_dir))))
        returns = []
        for idx, overrides, job_dir, ref in runs:
            try:
                returns.append(ray.get(ref))
            except ray.exceptions.RayError as e:  # the job is lost, not the sweep
                cause = getattr(e, "cause", None)
                message = str(cause) if isinstance(cause, JobInterrupted) else f"{type(e).__name__}: {e}"
                message = message.strip().splitlines()[0] if message.strip() else type(e).__name__
                log.error("job %d (%s) did not finish on Ray: %s", idx, " ".join(overrides), message)
                result = job_dir / RESULT
                if not isinstance(cause, JobInterrupted) or not result.is_file():
                    job_dir.mkdir(parents=True, exist_ok=True)
                    write_result(job_dir, "", "failed", [], 0.0, error=f"Ray: {message}",
                                 log_file=next(iter(sorted(job_dir.glob("*.log"))), None))
                ret = JobReturn(overrides=list(overrides), cfg=self.config, hydra_cfg=self.config,
                                working_dir=str(job_dir), task_name=str(self.config.hydra.job.name),
                                status=JobStatus.COMPLETED)
                ret.return_value = None
                returns.append(ret)
        return returns
