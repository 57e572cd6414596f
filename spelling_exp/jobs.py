"""Job bookkeeping: per-job result markers, skipping finished jobs, and the sweep summary.

Every job writes ``job_result.json``: ``running`` (with host, pid and start time) when it starts,
then complete / failed / interrupted, the config hash, the error, the path to its log and its
W&B run id. Sweep presets set ``sweep_id``, so the sweep dir is
deterministic (``multirun/<experiment>/<sweep_id>/<job>``): rerunning the same multirun command
finds each finished job's marker and skips it, and redoes only missing or failed jobs.

``sweep_status`` is ``python -m spelling_exp.status <sweep dir>``: each job's state, wall time,
headline metric and log, read from these files alone (no model, no writes). Where the files lie:
storage/layout.py.

Imports stay light (no torch): the CLI and the sweep callback use this at start-up.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spelling_exp.storage.io import atomic_write_json, atomic_write_text, canonical_json, read_json, sha256_text
from spelling_exp.storage.layout import JOB_RESULT, RunLayout, SweepLayout

log = logging.getLogger(__name__)
RESULT = JOB_RESULT  # the marker's file name, for the launchers and the sweep report


def job_config_sha(cfg: DictConfig) -> str:
    """Hash of the resolved job config, without where it writes (so reruns match)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    c.pop("output_dir", None)
    return sha256_text(canonical_json(c))


def finished(run_dir: Path, sha: str) -> dict[str, Any] | None:
    f = RunLayout(run_dir).job_result
    if not f.is_file():
        return None
    r = read_json(f)
    return r if r.get("status") == "complete" and r.get("config_sha") == sha else None


def write_result(run_dir: Path, sha: str, status: str, stages: list[str], seconds: float,
                 error: str | None = None, log_file: Path | None = None, **extra: Any) -> None:
    """``extra``: where the job ran (host, pid, ray task...), its W&B run id, ..."""
    atomic_write_json(RunLayout(run_dir).job_result, {"status": status, "config_sha": sha, "stages": stages,
                                         "seconds": round(seconds, 2), "error": error,
                                         "log": str(log_file) if log_file else None, **extra})


def write_running(run_dir: Path, sha: str, stages: list[str], log_file: Path | None = None, **extra: Any) -> None:
    """The marker a job leaves while it runs: ``stage=status`` shows it as running (or as failed
    once its process is gone, when it ran on this host)."""
    where = {"host": socket.gethostname(), "pid": os.getpid(), **extra, "started": time.time()}
    write_result(run_dir, sha, "running", stages, 0.0, log_file=log_file, **where)


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs of a sweep (those Hydra created: they hold .hydra/), in job order."""
    return SweepLayout(sweep_dir).job_dirs()


def _read_result(job: RunLayout) -> dict[str, Any] | None:
    return read_json(job.job_result) if job.job_result.is_file() else None


def summarize_sweep(sweep_dir: Path) -> dict[str, Any]:
    jobs = []
    sweep = SweepLayout(sweep_dir)
    for job in sweep.jobs():
        r = _read_result(job) or {"status": "missing"}
        overrides = OmegaConf.load(job.overrides) if job.overrides.exists() else []
        jobs.append({"dir": str(job.root), "status": r.get("status"), "error": r.get("error"), "log": r.get("log"),
                     "seconds": r.get("seconds"), "overrides": list(overrides)})
    common = set.intersection(*(set(j["overrides"]) for j in jobs)) if jobs else set()
    for j in jobs:  # what distinguishes this job from the others: the swept values
        j["swept"] = [o for o in j["overrides"] if o not in common]
    summary = {"sweep_dir": str(sweep_dir), "jobs": jobs,
               "complete": sum(j["status"] == "complete" for j in jobs),
               "failed": [j for j in jobs if j["status"] != "complete"]}
    atomic_write_json(sweep.summary_json, summary)
    lines = [f"# Sweep summary: {sweep_dir}", "", f"{summary['complete']} of {len(jobs)} jobs complete.", ""]
    lines += [f"- job {Path(j['dir']).name} ({' '.join(j['swept'])}): {j['status']}"
              + (f" - {j['error']} (log: {j['log']})" if j["status"] != "complete" else "") for j in jobs]
    atomic_write_text(sweep.summary_md, "\n".join(lines) + "\n")
    return summary


# ------------------------------------------------------------------ status
def expected_jobs(sweep_dir: Path) -> list[list[str]] | None:
    """Every job's overrides, in job order, as Hydra's basic sweeper expands them from the sweep's
    multirun.yaml (sweeper params, then the command line); None when that cannot be read."""
    f = SweepLayout(sweep_dir).multirun_yaml
    if not f.is_file():
        return None
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        cfg = OmegaConf.load(f)
        params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
        args = [f"{k}={v}" for k, v in params.items()] + list(OmegaConf.select(cfg, "hydra.overrides.task") or [])
        batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(args), None)
        return [list(job) for batch in batches for job in batch]
    except Exception as e:  # another sweeper, a hand-edited file: list the job dirs that exist
        log.debug("cannot expand %s: %s", f, e)
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _headline(job_dir: Path) -> str:
    """Adapter accuracy per task and the difference to the base model (strict), from compare/."""
    f = RunLayout(job_dir).comparison
    if not f.is_file():
        return "-"
    try:
        c = read_json(f)
        tasks = c.get("tasks", {})
        # The comparison records its task order (tasks/registry.py); this layer cannot import the registry.
        order = [t for t in c.get("order") or sorted(tasks) if t in tasks]
        return "; ".join(f"{t} {100 * tasks[t]['strict']['adapter']:.1f}% ({100 * tasks[t]['strict']['diff']:+.1f})"
                         for t in order if "strict" in tasks[t]) or "-"
    except (ValueError, KeyError, TypeError):
        return "?"


def _seconds(s: float | None) -> str:
    if s is None:
        return "-"
    s = float(s)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def sweep_status(sweep_dir: Path, now: float | None = None) -> list[dict[str, Any]]:
    """One row per job: job, swept overrides, state (complete / failed / interrupted / running /
    missing), wall time, headline metric, log. A ``running`` marker whose process is gone (same
    host) reads as failed."""
    now = time.time() if now is None else now
    host = socket.gethostname()
    dirs = {}
    for job in SweepLayout(sweep_dir).jobs():
        f = job.overrides
        dirs[tuple(OmegaConf.load(f)) if f.is_file() else (job.root.name,)] = job.root
    expected = expected_jobs(sweep_dir)
    keys = [tuple(j) for j in expected] if expected is not None else list(dirs)
    keys += [k for k in dirs if k not in keys]  # dirs of an earlier, different sweep in the same place
    common = set.intersection(*(set(k) for k in keys)) if keys else set()
    rows = []
    for num, key in enumerate(keys):
        d = dirs.get(key)
        r = (_read_result(RunLayout(d)) if d is not None else None) or {}
        state, seconds, error = r.get("status", "missing"), r.get("seconds"), r.get("error")
        if state == "running":
            seconds = now - r.get("started", now)
            if r.get("host") == host and r.get("pid") and not _pid_alive(int(r["pid"])):
                state, error = "failed", f"process {r['pid']} on {host} ended without a result (killed?)"
        log_file = r.get("log") or (str(next(iter(sorted(d.glob("*.log"))), "")) if d is not None else "")
        rows.append({"job": d.name if d is not None else str(num), "swept": " ".join(o for o in key if o not in common),
                     "state": state, "seconds": seconds, "wall": _seconds(seconds),
                     "headline": _headline(d) if d is not None and state == "complete" else "-",
                     "error": error, "log": log_file or "-", "wandb_run_id": r.get("wandb_run_id")})
    return rows


def format_status(sweep_dir: Path, rows: list[dict[str, Any]]) -> str:
    cols = [("job", "job"), ("swept", "overrides"), ("state", "state"), ("wall", "wall time"),
            ("headline", "adapter strict (diff, points)"), ("log", "log")]
    table = [[h for _, h in cols]] + [[str(r[k]) for k, _ in cols] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(cols) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in table]
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "running", "failed", "interrupted",
                                                              "missing")}
    lines = [f"Sweep {sweep_dir}: {len(rows)} jobs, " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), "",
             *lines]
    lines += [f"job {r['job']}: {r['error']}" for r in rows if r["state"] in ("failed", "interrupted") and r["error"]]
    return "\n".join(lines)
