"""Job bookkeeping: per-job result markers, skipping finished jobs, and the sweep summary.

Every job writes ``job_result.json`` (status complete / failed / interrupted, the config hash,
the error, the path to its log). Sweep presets set ``sweep_id``, so the sweep dir is
deterministic (``multirun/<experiment>/<sweep_id>/<job>``): rerunning the same multirun command
finds each finished job's marker and skips it, and redoes only missing or failed jobs.

Imports stay light (no torch): the CLI and the sweep callback use this at start-up.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from spelling_exp.storage.io import atomic_write_json, atomic_write_text, canonical_json, read_json, sha256_text

log = logging.getLogger(__name__)
RESULT = "job_result.json"


def job_config_sha(cfg: DictConfig) -> str:
    """Hash of the resolved job config, without where it writes (so reruns match)."""
    c = OmegaConf.to_container(cfg, resolve=True)
    c.pop("output_dir", None)
    return sha256_text(canonical_json(c))


def finished(run_dir: Path, sha: str) -> dict[str, Any] | None:
    f = run_dir / RESULT
    if not f.is_file():
        return None
    r = read_json(f)
    return r if r.get("status") == "complete" and r.get("config_sha") == sha else None


def write_result(run_dir: Path, sha: str, status: str, stages: list[str], seconds: float,
                 error: str | None = None, log_file: Path | None = None) -> None:
    atomic_write_json(run_dir / RESULT, {"status": status, "config_sha": sha, "stages": stages,
                                         "seconds": round(seconds, 2), "error": error,
                                         "log": str(log_file) if log_file else None})


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Job dirs of a sweep (those Hydra created: they hold .hydra/), in job order."""
    dirs = [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
    return sorted(dirs, key=lambda p: (int(p.name) if p.name.isdigit() else 1 << 30, p.name))


def summarize_sweep(sweep_dir: Path) -> dict[str, Any]:
    jobs = []
    for d in job_dirs(sweep_dir):
        r = read_json(d / RESULT) if (d / RESULT).is_file() else {"status": "missing"}
        overrides = OmegaConf.load(d / ".hydra" / "overrides.yaml") if (d / ".hydra" / "overrides.yaml").exists() \
            else []
        jobs.append({"dir": str(d), "status": r.get("status"), "error": r.get("error"), "log": r.get("log"),
                     "seconds": r.get("seconds"), "overrides": list(overrides)})
    common = set.intersection(*(set(j["overrides"]) for j in jobs)) if jobs else set()
    for j in jobs:  # what distinguishes this job from the others: the swept values
        j["swept"] = [o for o in j["overrides"] if o not in common]
    summary = {"sweep_dir": str(sweep_dir), "jobs": jobs,
               "complete": sum(j["status"] == "complete" for j in jobs),
               "failed": [j for j in jobs if j["status"] != "complete"]}
    atomic_write_json(sweep_dir / "sweep_summary.json", summary)
    lines = [f"# Sweep summary: {sweep_dir}", "", f"{summary['complete']} of {len(jobs)} jobs complete.", ""]
    lines += [f"- job {Path(j['dir']).name} ({' '.join(j['swept'])}): {j['status']}"
              + (f" - {j['error']} (log: {j['log']})" if j["status"] != "complete" else "") for j in jobs]
    atomic_write_text(sweep_dir / "sweep_summary.md", "\n".join(lines) + "\n")
    return summary
