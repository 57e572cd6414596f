"""Sweeps: joblib and Slurm launchers, shared caches, resumable reruns, failures, and the
cross-run comparison report."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest
from helpers import ROOT, run_cli
from helpers.wandb_records import summarize

# Smoke pipeline, even smaller: the sweep tests are about orchestration, not statistics.
TINY = ["+experiment=smoke", "train.max_steps=2", "eval.n_questions=2", "eval.max_new_tokens=8"]


def _jobs(sweep):
    return sorted((p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir()), key=lambda p: p.name)


@pytest.fixture(scope="module")
def joblib_sweep(tmp_path_factory, cache_dir):
    sweep = tmp_path_factory.mktemp("sweep") / "rank"
    args = ["-m", *TINY, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "lora.r=4,8", "logger=wandb",
            f"hydra.sweep.dir={sweep}"]
    r = run_cli(*args, env={"WANDB_MODE": "offline"})
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return sweep, args, r


@pytest.mark.slow
def test_joblib_sweep_runs_both_jobs_and_writes_comparison(joblib_sweep):
    sweep, _, r = joblib_sweep
    jobs = _jobs(sweep)
    assert len(jobs) == 2
    for j in jobs:
        assert json.loads((j / "job_result.json").read_text())["status"] == "complete"
        assert (j / "report" / "report.html").is_file()
    rows = (sweep / "comparison.csv").read_text().splitlines()
    assert rows[0].startswith("job,lora.r,position_base") and len(rows) == 3
    assert {row.split(",")[1] for row in rows[1:]} == {"4", "8"}
    assert "2/2 jobs complete" in r.stdout and (sweep / "comparison.html").is_file()
    assert (sweep / "comparison_0.png").is_file()


@pytest.mark.slow
def test_sweep_jobs_share_one_wandb_group(joblib_sweep):
    sweep, _, _ = joblib_sweep
    runs = [summarize(next((j / "wandb").glob("offline-run-*/run-*.wandb"))) for j in _jobs(sweep)]
    assert len({r["group"] for r in runs}) == 1 and runs[0]["group"] == f"smoke/{sweep.name}"
    assert all("smoke" in r["tags"] for r in runs)
    assert len({r["name"] for r in runs}) == 2  # one run per job
    assert all(r["exit_code"] == 0 for r in runs)


@pytest.mark.slow
def test_shared_caches_base_eval_computed_once(joblib_sweep):
    sweep, _, _ = joblib_sweep
    logs = "".join((j / "smoke.log").read_text() for j in _jobs(sweep))
    # Both jobs need the same base evaluation; the per-key lock lets exactly one compute it.
    assert logs.count("evaluation eval_base reused from cache") >= 1
    a, b = (json.loads((j / "eval_base" / "metrics.json").read_text()) for j in _jobs(sweep))
    assert a == b


@pytest.mark.slow
def test_rerun_of_finished_sweep_does_no_work(joblib_sweep):
    sweep, args, _ = joblib_sweep
    before = {j.name: (j / "job_result.json").stat().st_mtime_ns for j in _jobs(sweep)}
    runs = {j.name: sorted(p.name for p in (j / "wandb").glob("offline-run-*")) for j in _jobs(sweep)}
    r = run_cli(*args, env={"WANDB_MODE": "offline"})
    assert r.returncode == 0, r.stderr[-3000:]
    logs = "".join((j / "smoke.log").read_text() for j in _jobs(sweep))
    assert logs.count("already complete; skipping") == 2
    assert {j.name: (j / "job_result.json").stat().st_mtime_ns for j in _jobs(sweep)} == before
    # a skipped job creates no W&B run
    assert {j.name: sorted(p.name for p in (j / "wandb").glob("offline-run-*")) for j in _jobs(sweep)} == runs


@pytest.mark.slow
def test_moved_sweep_keeps_its_comparison_and_ci_bars(joblib_sweep, tmp_path):
    """Review bug: absolute eval dirs in comparison.json dropped the sweep plots' CI bars once a
    sweep dir was moved (the adapter metrics could not be found)."""
    from spelling_exp.analysis.compare import read_comparison
    from spelling_exp.analysis.sweep_report import collect_rows

    sweep, _, _ = joblib_sweep
    staging, moved = tmp_path / "staging", tmp_path / "moved"
    shutil.copytree(sweep, staging, ignore=shutil.ignore_patterns("wandb"))
    staging.rename(moved)
    c = read_comparison(moved / "0" / "compare" / "comparison.json")
    assert c["adapter_dir"] == str(moved / "0" / "eval_adapter")
    rows, swept, failed = collect_rows(moved)
    assert len(rows) == 2 and not failed and swept == ["lora.r"]
    for row in rows:
        for t in row["tasks"].values():  # the real Wilson interval, not the [a, a] fallback
            assert t["adapter_ci95"][0] < t["adapter_ci95"][1]


@pytest.mark.slow
def test_failed_job_does_not_stop_the_sweep(tmp_path, cache_dir):
    sweep = tmp_path / "sw"
    # train.backend=unsloth cannot run without CUDA: that job fails, the peft one must complete.
    args = ["-m", *TINY, "train.backend=peft,unsloth", f"hydra.sweep.dir={sweep}"]
    r = run_cli(*args)
    assert r.returncode == 1, r.stderr[-3000:]
    results = {j.name: json.loads((j / "job_result.json").read_text()) for j in _jobs(sweep)}
    assert results["0"]["status"] == "complete"
    assert results["1"]["status"] == "failed" and "needs a CUDA GPU" in results["1"]["error"]
    assert results["1"]["log"].endswith("1/smoke.log") and os.path.isfile(results["1"]["log"])
    assert "FAILED job 1 (train.backend=unsloth)" in r.stdout and "log:" in r.stdout
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert summary["complete"] == 1 and len(summary["failed"]) == 1
    assert "## Failed jobs" in (sweep / "comparison.md").read_text()
    # Rerun: the finished job is skipped, the failed one is retried (and fails again here).
    r = run_cli(*args)
    assert r.returncode == 1
    assert "already complete; skipping" in (sweep / "0" / "smoke.log").read_text()


def _fake_job(sweep, num, overrides, adapter_acc, base_acc=0.2, split="validation"):
    """A finished job dir as the pipeline writes it (only the files the sweep report reads)."""
    j = sweep / str(num)
    (j / ".hydra").mkdir(parents=True)
    (j / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (j / "job_result.json").write_text(json.dumps({"status": "complete"}))
    (j / "eval_adapter").mkdir()
    tasks = {}
    for t in ("position", "count"):
        tasks[t] = {"strict": {"n": 100, "base": base_acc, "adapter": adapter_acc, "diff": adapter_acc - base_acc,
                               "ci95": [adapter_acc - base_acc - 0.1, adapter_acc - base_acc + 0.1], "p": 0.5,
                               "test": "mcnemar_exact"},
                    "format": {"no_answer": {"diff": 0.0}}, "no_answer": {"base": 0.1, "adapter": 0.1}}
    (j / "eval_adapter" / "metrics.json").write_text(json.dumps(
        {"tasks": {t: {"accuracy": {"ci95": [adapter_acc - 0.05, adapter_acc + 0.05]}} for t in tasks},
         "meta": {"split": split}}))
    (j / "compare").mkdir()
    (j / "compare" / "comparison.json").write_text(json.dumps(
        {"adapter_dir": str(j / "eval_adapter"), "tasks": tasks}))


def test_seed_sweep_report_aggregates_mean_and_t_interval(tmp_path):
    from spelling_exp.analysis.sweep_report import write_sweep_report

    sweep = tmp_path / "seeds"
    accs = {("4", 0): 0.2, ("4", 1): 0.3, ("4", 2): 0.4, ("8", 0): 0.5, ("8", 1): 0.5, ("8", 2): 0.5}
    for n, ((r, s), acc) in enumerate(sorted(accs.items())):
        _fake_job(sweep, n, ["+experiment=smoke", f"lora.r={r}", f"train.seed={s}"], acc)
    write_sweep_report(sweep)
    c = json.loads((sweep / "comparison.json").read_text())
    assert c["swept"] == ["lora.r", "train.seed"]
    agg = {a["params"]["lora.r"]: a for a in c["aggregated"]}
    pos = agg["4"]["tasks"]["position"]["adapter"]
    # mean 0.3, sd 0.1, t(2) = 4.303: half-width 4.303 * 0.1 / sqrt(3) = 0.24843
    assert pos["mean"] == pytest.approx(0.3)
    assert pos["hi"] - pos["mean"] == pytest.approx(4.303 * 0.1 / 3 ** 0.5, abs=1e-4)
    assert agg["8"]["tasks"]["count"]["adapter"] == {"mean": pytest.approx(0.5), "lo": pytest.approx(0.5),
                                                      "hi": pytest.approx(0.5)}
    assert agg["4"]["n_seeds"] == 3 and agg["4"]["tasks"]["count"]["diff"]["mean"] == pytest.approx(0.1)
    md = (sweep / "comparison.md").read_text()
    assert "## Aggregated over seeds" in md and "| 4 | 3 |" in md
    assert len((sweep / "comparison.csv").read_text().splitlines()) == 7


@pytest.mark.parametrize("split", ["validation", "test"])
def test_sweep_report_selects_on_validation_and_prints_the_one_test_command(tmp_path, split):
    from spelling_exp.analysis.sweep_report import write_sweep_report

    sweep = tmp_path / "rank"
    for n, (r, acc) in enumerate(((4, 0.30), (8, 0.45), (16, 0.40))):
        _fake_job(sweep, n, ["+experiment=smoke", f"lora.r={r}", f"eval.split={split}"], acc, split=split)
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n    - +experiment=smoke\n"
                                         "    - +sweep=lora_rank\n")
    write_sweep_report(sweep)
    sel = json.loads((sweep / "comparison.json").read_text())["selected"]
    assert sel["job"] == "1" and sel["params"]["lora.r"] == 8 and sel["on_validation"] == (split == "validation")
    # one command: the sweep preset, the winner's overrides, the test split, its own output dir
    assert sel["command"] == (f"python -m spelling_exp +sweep=lora_rank +experiment=smoke lora.r=8 eval.split=test "
                              f"output_dir={sweep / 'test_1'}")
    md = (sweep / "comparison.md").read_text()
    assert "## Selected configuration" in md and sel["command"] in md
    assert ("Warning" in md) == (split == "test")


def test_compare_stage_on_a_sweep_dir(tmp_path):
    sweep = tmp_path / "sw"
    for n, r in enumerate((4, 8)):
        _fake_job(sweep, n, [f"lora.r={r}"], 0.3 + 0.1 * n)
    r = run_cli("stage=compare", f"sweep_dir={sweep}", f"output_dir={tmp_path}/out")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (sweep / "comparison.html").is_file() and "| 0 | 4 |" in r.stdout


# ------------------------------------------------------------------------------ real Slurm
def _slurm_up() -> bool:
    return shutil.which("scontrol") is not None and subprocess.run(
        ["scontrol", "ping"], capture_output=True, timeout=10).returncode == 0


@pytest.fixture(scope="session")
def slurm_cluster():
    if not _slurm_up():
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            pytest.skip("no Slurm cluster and cannot start one here (needs root and apt-get)")
        r = subprocess.run(["bash", str(ROOT / "scripts" / "slurm" / "start_slurm.sh")], capture_output=True,
                           text=True, timeout=1800)
        if r.returncode != 0:
            pytest.skip(f"could not start the local Slurm cluster: {r.stderr.strip().splitlines()[-1:]}")
    return True


@pytest.mark.slow
def test_slurm_sweep_on_real_cluster(slurm_cluster, tmp_path, cache_dir):
    sweep = tmp_path / "slurm_sweep"
    r = run_cli("-m", *TINY, "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=4",
                "lora.r=4,8", f"hydra.sweep.dir={sweep}", timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    jobs = _jobs(sweep)
    assert len(jobs) == 2
    for j in jobs:
        assert json.loads((j / "job_result.json").read_text())["status"] == "complete"
        assert (j / "compare" / "comparison.json").is_file()
    assert list((sweep / ".submitit").glob("*/*_log.out")), "jobs must have run through submitit/Slurm"
    assert len((sweep / "comparison.csv").read_text().splitlines()) == 3
    # Slurm's accounting saw the array tasks finish (slurmdbd records arrive with a small lag).
    array_ids = {p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name)}
    deadline, states = time.time() + 30, {}
    while time.time() < deadline:
        out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-S", "now-1hour"],
                             capture_output=True, text=True).stdout
        states = dict(line.split("|")[:2] for line in out.splitlines() if "|" in line)
        if all(states.get(j) == "COMPLETED" for j in array_ids):
            break
        time.sleep(1)
    assert array_ids and all(states.get(j) == "COMPLETED" for j in array_ids), states


@pytest.mark.slow
def test_slurm_preemption_checkpoints_requeues_and_resumes(slurm_cluster, tmp_path, cache_dir):
    """USR2 (what submitit asks Slurm to send before a time limit or on preemption) mid-training:
    the trainer saves a checkpoint, hands the signal to submitit, which requeues the job; the
    requeued job resumes from that checkpoint and finishes."""
    import sys

    sweep = tmp_path / "preempt"
    args = ["-m", "+experiment=smoke", "stages=[data,train]", "train.max_steps=12", "train.save_steps=2",
            "train.use_cache=false", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=2",
            "hydra.launcher.mem_gb=4", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen([sys.executable, "-m", "spelling_exp", *args], cwd=ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpt = sweep / "0" / "train" / "checkpoints" / "checkpoint-2" / "trainer_state.json"
    deadline = time.time() + 600
    while not ckpt.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, "timed out waiting for the first checkpoint"
        time.sleep(0.2)
    # a one-job sweep is a plain Slurm job (no array index)
    job_id = next(p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+(_0)?", p.name))
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    # Slurm holds a requeued batch job ~2 minutes (BeginTime) before it is eligible again; release it now.
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline:
        state = subprocess.run(["squeue", "-h", "-j", job_id.split("_")[0], "-o", "%T %r"], capture_output=True,
                               text=True).stdout
        if "PENDING" in state:
            subprocess.run(["scontrol", "update", f"JobId={job_id.split('_')[0]}", "StartTime=now"])
            break
        time.sleep(0.5)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    result = json.loads((sweep / "0" / "job_result.json").read_text())
    assert result["status"] == "complete"
    info = json.loads((sweep / "0" / "train" / "adapter" / "train_info.json").read_text())
    assert info["steps"] == 12 and info["resumed_from"] is not None
    resumed = int(info["resumed_from"].rsplit("-", 1)[1])
    assert 2 <= resumed < 12 and info["steps_run_this_session"] == 12 - resumed
    log = "".join(p.read_text() for p in (sweep / ".submitit").glob(f"{job_id}/*_log.*"))
    assert "Caught signal SIGUSR2" in log and "preempted" in log
