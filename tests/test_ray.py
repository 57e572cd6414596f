"""hydra/launcher=ray on a real Ray head node (`ray start --head` on 127.0.0.1, scripts/ray/): a sweep
runs as Ray tasks and shares the caches, a failing job stays one failed job, a preempted training job
is retried by Ray and resumes into the same W&B run, and bad cluster settings are refused up front.

CI (.ci/run) starts the head node; without one, the `ray_cluster` fixture starts its own and stops
it (and only it) at the end of the session."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, compose_config, run_cli
from helpers.wandb_records import records

PORT = os.environ.get("RAY_PORT", "6390")  # scripts/ray/start_ray.sh's
TINY = ["+experiment=smoke", "train.max_steps=2", "eval.n_questions=2", "eval.max_new_tokens=8"]
RAY = ["hydra/launcher=ray", "hydra.launcher.ray.init.address=auto", "hydra.launcher.mem_gb=2"]


def _head_up() -> bool:
    import socket

    with socket.socket() as sock:  # nothing listening: no need to wait for `ray status` to give up
        sock.settimeout(2)
        if sock.connect_ex(("127.0.0.1", int(PORT))) != 0:
            return False
    ray_bin = Path(sys.executable).parent / "ray"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # a head node on 127.0.0.1, as start_ray.sh runs it
    try:
        return subprocess.run([str(ray_bin), "status", "--address", f"127.0.0.1:{PORT}"], env=env,
                              capture_output=True, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """The head node CI started, or one of our own (stopped at the end: its process group only)."""
    pytest.importorskip("ray", reason="the Ray extra is not installed (pip install -e '.[ray]')")
    if _head_up():
        yield f"127.0.0.1:{PORT}"
        return
    env = {**os.environ, "RAY_STATE": str(tmp_path_factory.mktemp("ray_state")),
           "RAY_BIN": str(Path(sys.executable).parent / "ray")}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "ray" / "start_ray.sh")], env=env, capture_output=True,
                       text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(f"could not start a Ray head node: {(r.stdout + r.stderr)[-2000:]}")
    try:
        yield f"127.0.0.1:{PORT}"
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "ray" / "stop_ray.sh")], env=env, capture_output=True,
                       timeout=120)


def _jobs(sweep):
    return sorted((p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir()), key=lambda p: p.name)


def _run_ids(job: Path) -> list[str]:
    """The run id of each offline W&B run (one per attempt) in a job dir, in start order."""
    ids = []
    for f in sorted(job.glob("wandb/offline-run-*/run-*.wandb")):
        ids += [r.run.run_id for r in records(f) if r.WhichOneof("record_type") == "run"][:1]
    return ids


@pytest.mark.slow
def test_ray_sweep_on_real_cluster(ray_cluster, tmp_path, cache_dir):
    sweep = tmp_path / "ray_sweep"
    t0 = time.perf_counter()
    r = run_cli("-m", *TINY, *RAY, "hydra.launcher.cpus_per_job=1", "lora.r=4,8", "logger=wandb",
                f"hydra.sweep.dir={sweep}", env={"WANDB_MODE": "offline"}, timeout=900)
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "Connecting to existing Ray cluster at address: 127.0.0.1" in r.stdout + r.stderr
    jobs = _jobs(sweep)
    assert len(jobs) == 2
    results = [json.loads((j / "job_result.json").read_text()) for j in jobs]
    for j, res in zip(jobs, results):
        assert res["status"] == "complete" and (j / "report" / "report.html").is_file()
        # ran as a Ray task, in a worker process of its own (not the driver, not each other's)
        assert res["ray"]["task_id"] and res["ray"]["node_id"]
        log = (j / "smoke.log").read_text()
        assert "torch threads: 1" in log  # the one CPU Ray reserved, not Ray's OMP_NUM_THREADS nor all cores
        # one W&B run per job, under the job's stable id
        assert _run_ids(j) == [res["wandb_run_id"]]
    assert len({res["pid"] for res in results}) == 2 and len({res["ray"]["task_id"] for res in results}) == 2
    # the shared cache: one job computed the base evaluation, the other reused it
    logs = "".join((j / "smoke.log").read_text() for j in jobs)
    assert logs.count("evaluation eval_base reused from cache") >= 1
    a, b = (json.loads((j / "eval_base" / "metrics.json").read_text()) for j in jobs)
    assert a == b
    assert "2/2 jobs complete" in r.stdout and (sweep / "comparison.html").is_file()
    assert len((sweep / "comparison.csv").read_text().splitlines()) == 3
    # stage=status reads the same sweep
    s = run_cli("stage=status", f"sweep_dir={sweep}")
    assert s.returncode == 0 and s.stdout.count(" complete ") == 2, s.stdout + s.stderr
    print(f"ray sweep: {elapsed:.1f} s")


@pytest.mark.slow
def test_ray_failing_job_is_isolated(ray_cluster, tmp_path, cache_dir):
    sweep = tmp_path / "ray_fail"
    # job 1's hold-out word list is too short: it passes every up-front check (sweep_checks.py would
    # refuse a bad value before any job) and fails inside its data build; job 0 must still complete
    few = tmp_path / "few_words.txt"
    few.write_text("pelican\nbanana\n")
    good = ROOT / "tests" / "data" / "quickstart_holdout_words.txt"
    r = run_cli("-m", "+experiment=smoke", "stage=data", *RAY, "hydra.launcher.cpus_per_job=1",
                "data.holdout.source=file", f"data.holdout.path={good},{few}", f"hydra.sweep.dir={sweep}",
                timeout=600)
    assert r.returncode == 1, (r.stdout + r.stderr)[-4000:]
    results = {j.name: json.loads((j / "job_result.json").read_text()) for j in _jobs(sweep)}
    assert results["0"]["status"] == "complete" and results["0"]["ray"]["task_id"]
    assert results["1"]["status"] == "failed" and "pass the filters" in results["1"]["error"]
    assert "FAILED job 1 (data.holdout.path=" in r.stdout
    s = run_cli("stage=status", f"sweep_dir={sweep}")
    assert "1 complete, 1 failed" in s.stdout and "pass the filters" in s.stdout, s.stdout


@pytest.mark.slow
def test_ray_preempted_training_job_resumes_into_the_same_wandb_run(ray_cluster, tmp_path, cache_dir):
    """SIGTERM to the Ray worker mid-training (what a node drain or spot preemption sends): the trainer
    checkpoints, the worker exits, Ray retries the task, and the retry resumes from the checkpoint
    and logs to the same W&B run id."""
    sweep = tmp_path / "ray_preempt"
    args = ["-m", "+experiment=smoke", "stages=[data,train]", "train.max_steps=4", "train.save_steps=2",
            "train.use_cache=false", "logger=wandb", *RAY, "hydra.launcher.cpus_per_job=2",
            f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "-m", "spelling_exp", *args], cwd=ROOT,
                            env={**os.environ, "WANDB_MODE": "offline"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    job = sweep / "0"
    ckpt = job / "train" / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.time() + 600
    while not ckpt.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "timed out waiting for the first checkpoint"
        time.sleep(0.1)
    running = json.loads((job / "job_result.json").read_text())
    assert running["status"] == "running" and running["ray"]["task_id"]
    os.kill(running["pid"], signal.SIGTERM)  # the Ray worker process running the job
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    result = json.loads((job / "job_result.json").read_text())
    assert result["status"] == "complete" and result["pid"] != running["pid"]  # a new worker finished it
    info = json.loads((job / "train" / "adapter" / "train_info.json").read_text())
    resumed = int(info["resumed_from"].rsplit("-", 1)[1])
    assert info["steps"] == 4 and 2 <= resumed < 4 and info["steps_run_this_session"] == 4 - resumed
    log = (job / "smoke.log").read_text()
    assert "received signal 15" in log and "resuming from" in log
    # two attempts, one W&B run: both offline runs carry the job's stable id
    assert _run_ids(job) == [result["wandb_run_id"]] * 2


@pytest.mark.slow
@pytest.mark.parametrize("override,message", [
    ("hydra.launcher.cpus_per_job=512", "hydra.launcher.cpus_per_job=512: no node of the Ray cluster has 512 CPU"),
    ("paths.cache_dir={blocked}/cache", "paths.cache_dir={blocked}/cache: {blocked} is a file, not a directory"),
])
def test_ray_refuses_bad_cluster_settings_before_any_job(ray_cluster, tmp_path, override, message):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a directory\n")
    sweep = tmp_path / "refused"
    r = run_cli("-m", *TINY, *RAY, "lora.r=4,8", override.format(blocked=blocked), f"hydra.sweep.dir={sweep}",
                timeout=300)
    assert r.returncode == 2, (r.stdout + r.stderr)[-3000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("spelling_exp: error:")]
    assert len(errors) == 1 and message.format(blocked=blocked) in errors[0], r.stderr[-3000:]
    assert not sweep.exists() or not _jobs(sweep)  # no job started


@pytest.mark.slow  # a multirun CLI process (~4 s): kept out of the inner loop
def test_missing_ray_extra_is_one_line(tmp_path):
    """Without ray installed, hydra/launcher=ray is bad input (exit 2), not a traceback."""
    shadow = tmp_path / "shadow"
    (shadow / "ray").mkdir(parents=True)
    (shadow / "ray" / "__init__.py").write_text("raise ImportError('no ray here', name='ray')\n")
    r = run_cli("-m", *TINY, "hydra/launcher=ray", "lora.r=4,8", f"hydra.sweep.dir={tmp_path}/sw",
                env={"PYTHONPATH": f"{shadow}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert r.returncode == 2, r.stderr[-3000:]
    assert "hydra/launcher=ray needs the Ray extra" in r.stderr and "pip install -e '.[ray]'" in r.stderr
    assert "Traceback" not in r.stderr



def test_ray_launcher_config_composes(monkeypatch):
    """conf/hydra/launcher/ray.yaml composes (not against hydra-ray-launcher's own schema, which lacks
    the per-job resources) and takes the per-job resources from the same variables as Slurm."""
    monkeypatch.setenv("SPELLING_EXP_CPUS", "3")
    monkeypatch.delenv("SPELLING_EXP_GPUS", raising=False)
    monkeypatch.delenv("SPELLING_EXP_MEM_GB", raising=False)
    cfg = compose_config("hydra/launcher=ray", "hydra.launcher.ray.init.address=auto", hydra_node=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.spelling_exp_ray.ray_launcher.RayLauncher"
    # oc.env gives strings; the launcher reads them as numbers
    assert (float(launcher.cpus_per_job), float(launcher.gpus_per_job), float(launcher.mem_gb)) == (3, 0, 8)
    assert launcher.ray.init.address == "auto" and launcher.max_requeues == 3 and launcher.check_cluster is True
