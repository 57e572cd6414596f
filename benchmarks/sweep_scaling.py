"""Makespan of a 4-job smoke sweep (lora.r = 2, 4, 8, 16) under each launcher, and the share of
time the shared caches save. Every variant starts from an empty cache, so one-time work (GGUF
conversion, tokenizer parse, data build, base-model evaluation) is included:

  basic, shared cache    : jobs one after another, one cache dir (the default)
  basic, per-job caches  : jobs one after another, each with its own cache dir: nothing shared
  joblib (2 jobs), shared: local parallel, torch threads = cores / jobs
  slurm (1 cpu/job)      : the local single-node Slurm cluster (skipped if it is not running)
  ray (1 cpu/job)        : hydra/launcher=ray on the head node of scripts/ray/start_ray.sh when it
                           runs (address=auto), else on a local Ray instance the launcher starts
                           (skipped without the Ray extra)

Saving = 1 - makespan(shared) / makespan(per-job caches), both with the basic launcher.
`--launchers basic,joblib,slurm,ray` measures only those (shared cache), e.g. to compare the
launchers side by side without the per-job-caches run.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _common import ROOT, print_table, write_results

SWEEP = ["-m", "+experiment=smoke", "lora.r=2,4,8,16"]


def run(args: list[str], cache: Path, sweep_dir: Path) -> float:
    import os
    import sys

    env = {**os.environ, "SPELLING_EXP_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "spelling_exp", *SWEEP, *args, f"hydra.sweep.dir={sweep_dir}"],
                       cwd=ROOT, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"sweep failed ({' '.join(args)}):\n{(r.stdout + r.stderr)[-3000:]}")
    return dt


def slurm_up() -> bool:
    return shutil.which("scontrol") is not None and subprocess.run(["scontrol", "ping"],
                                                                   capture_output=True).returncode == 0


def ray_head_up() -> bool:
    """The head node scripts/ray/start_ray.sh starts (127.0.0.1:6390)."""
    import os
    import sys

    ray = Path(sys.executable).parent / "ray"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    return ray.exists() and subprocess.run([str(ray), "status", "--address", "127.0.0.1:6390"], env=env,
                                           capture_output=True).returncode == 0


def ray_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None and importlib.util.find_spec("hydra_plugins.hydra_ray_launcher")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--launchers", default=None,
                    help="comma-separated subset of basic,joblib,slurm,ray (shared cache only); default: all variants")
    args = ap.parse_args()
    only = set(args.launchers.split(",")) if args.launchers else None
    base = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    variants = [
        ("basic, shared cache", []),
        ("basic, per-job caches", ["paths.cache_dir=${hydra:runtime.output_dir}/cache"]),
        ("joblib (2 jobs), shared cache", ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]),
    ]
    if slurm_up():
        variants.append(("slurm (1 cpu/job), shared cache", ["hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1",
                                                             "hydra.launcher.mem_gb=4"]))
    if ray_installed():
        ray = ["hydra/launcher=ray", "hydra.launcher.cpus_per_job=1", "hydra.launcher.mem_gb=4"]
        if ray_head_up():
            variants.append(("ray (1 cpu/job, head node), shared cache",
                             [*ray, "hydra.launcher.ray.init.address=auto"]))
        else:
            variants.append(("ray (1 cpu/job, local instance), shared cache", ray))
    if only is not None:
        variants = [(n, a) for n, a in variants if n.split(" ")[0].rstrip(",") in only and "per-job" not in n]
    results = {}
    try:
        for i, (name, args) in enumerate(variants):
            results[name] = run(args, base / f"cache{i}", base / f"sweep{i}")
            print(f"{name}: {results[name]:.1f} s", flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    ref = results.get("basic, shared cache")
    rows = [{"launcher": k, "makespan_s": f"{v:.1f}", "vs basic shared": f"{v / ref:.2f}x" if ref else "-"}
            for k, v in results.items()]
    print()
    print_table(rows, ["launcher", "makespan_s", "vs basic shared"])
    saved = None
    if ref and "basic, per-job caches" in results:
        saved = 1 - ref / results["basic, per-job caches"]
        print(f"\nshared caches save {100 * saved:.0f}% of the sequential makespan "
              f"({results['basic, per-job caches']:.1f} s -> {ref:.1f} s)")
    if not slurm_up():
        print("slurm: not measured (no cluster running; start it with scripts/slurm/start_slurm.sh)")
    if not ray_installed():
        print("ray: not measured (the Ray extra is not installed: pip install -e '.[ray]')")
    write_results("sweep_scaling", {"jobs": 4, "makespan_s": results, "shared_cache_saving": saved})


if __name__ == "__main__":
    main()
