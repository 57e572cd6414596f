"""`python -m spelling_exp.status <sweep dir>` (or `stage=status sweep_dir=...`): every job's state,
wall time, headline metric and log, from the job files alone (no model, no writes, well under 2 s);
and the stable W&B run id of a job."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from helpers import ROOT, make_config, run_cli

from spelling_exp import status
from spelling_exp.cli import status_requested
from spelling_exp.errors import ConfigError
from spelling_exp.tracking import stable_run_id


def _job(sweep, num, overrides, result=None, comparison=None):
    j = sweep / str(num)
    (j / ".hydra").mkdir(parents=True)
    (j / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if result is not None:
        (j / "job_result.json").write_text(json.dumps({"log": str(j / "smoke.log"), **result}))
    if comparison is not None:
        (j / "compare").mkdir()
        # compare.py writes the registry's task order beside the tasks; the table follows it
        (j / "compare" / "comparison.json").write_text(json.dumps(
            {"tasks": comparison, "order": ["position", "count"]}))
    return j


@pytest.fixture
def sweep(tmp_path):
    """A sweep of five jobs (lora.r=4..64) caught mid-way: one of each state."""
    sweep = tmp_path / "multirun" / "smoke" / "lora_rank"
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text(
        "hydra:\n  sweeper:\n    params:\n      lora.r: 4,8,16,32,64\n"
        "  overrides:\n    task:\n    - +experiment=smoke\n    - logger=wandb\n")
    base = ["lora.r={}", "+experiment=smoke", "logger=wandb"]  # Hydra writes the sweeper params first
    ov = [[o.format(r) for o in base] for r in (4, 8, 16, 32, 64)]
    _job(sweep, 0, ov[0], {"status": "complete", "seconds": 95.4},
         {"count": {"strict": {"adapter": 0.06, "diff": -0.10}},
          "position": {"strict": {"adapter": 0.287, "diff": -0.013}}})
    _job(sweep, 1, ov[1], {"status": "failed", "seconds": 3.2, "error": "train.backend=unsloth needs a CUDA GPU"})
    _job(sweep, 2, ov[2], {"status": "running", "host": socket.gethostname(), "pid": os.getpid(),
                           "started": time.time() - 30})
    dead = subprocess.Popen(["true"])
    dead.wait()
    _job(sweep, 3, ov[3], {"status": "running", "host": socket.gethostname(), "pid": dead.pid,
                           "started": time.time() - 600})
    return sweep  # job 4 (lora.r=64): no dir yet


def test_status_table_shows_every_job_state(sweep, tmp_path):
    before = sorted(p for p in sweep.rglob("*"))
    t0 = time.perf_counter()
    r = run_cli("stage=status", f"sweep_dir={sweep}", cwd=tmp_path)
    elapsed = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[3:8]}
    assert r.stdout.splitlines()[0] == f"Sweep {sweep}: 5 jobs, 1 complete, 1 running, 2 failed, 1 missing"
    assert "lora.r=4 " in rows["0"] and " complete " in rows["0"] and "95 s" in rows["0"]
    assert "position 28.7% (-1.3); count 6.0% (-10.0)" in rows["0"] and str(sweep / "0" / "smoke.log") in rows["0"]
    assert " failed " in rows["1"] and "job 1: train.backend=unsloth needs a CUDA GPU" in r.stdout
    assert " running " in rows["2"] and int(rows["2"].split()[3]) in range(30, 40)  # wall time so far
    assert " failed " in rows["3"] and f"job 3: process {sweep_pid(sweep, 3)} on" in r.stdout  # died, no result
    assert "lora.r=64" in rows["4"] and " missing " in rows["4"]
    # read-only, and no run dir of its own: nothing written anywhere
    assert sorted(p for p in sweep.rglob("*")) == before and not (tmp_path / "outputs").exists()
    assert elapsed < 3.0, f"stage=status took {elapsed:.1f} s (target < 2 s)"


def sweep_pid(sweep, num):
    return json.loads((sweep / str(num) / "job_result.json").read_text())["pid"]


def test_status_imports_no_ml_stack(sweep):
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "spelling_exp", "stage=status",
                        f"sweep_dir={sweep}"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    imported = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines() if "|" in line}
    assert not imported & {"torch", "transformers", "datasets", "peft", "trl", "wandb", "ray"}


def test_status_entry_point_prints_the_same_table(sweep, capsys):
    assert status.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == f"Sweep {sweep}: 5 jobs, 1 complete, 1 running, 2 failed, 1 missing"
    assert out.strip() == status.table(sweep)


@pytest.mark.parametrize("args,message", [
    (["stage=status"], "stage=status needs sweep_dir=<sweep dir>"),
    (["stage=status", "sweep_dir={tmp}/nope"], "sweep_dir={tmp}/nope: no such directory"),
    (["stage=status", "sweep_dir={tmp}"], "sweep_dir={tmp}: not a sweep dir"),
    (["stages=[data,status]", "sweep_dir={tmp}"], "stage=status runs alone"),
])
def test_status_bad_input_is_one_line(tmp_path, args, message):
    with pytest.raises(ConfigError) as e:
        status.check(make_config(*[a.format(tmp=tmp_path) for a in args]))
    assert message.format(tmp=tmp_path) in str(e.value) and "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_status_entry_point_refuses_a_bad_dir_in_one_line(tmp_path, capsys):
    assert status.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err == f"spelling_exp: error: sweep_dir={tmp_path}/nope: no such directory; set it to a sweep dir " \
                  "(multirun/<experiment>/<id>)\n"


@pytest.mark.parametrize("args,asked", [
    (["stage=status", "sweep_dir=x"], True), (["+stage=status"], True), (["stages=[data,status]"], True),
    (["stage='status'"], True), (["stage=data", "sweep_dir=status"], False), (["stages=[data,eval_base]"], False),
    (["-m", "stage=status"], False),  # Hydra's flags: a Hydra job (main answers status there)
    (["stage=[status"], False),  # Hydra reports the parse error
])
def test_status_is_read_off_the_command_line_by_hydras_grammar(args, asked):
    assert status_requested(args) is asked


def test_status_bad_input_through_the_cli_is_exit_2_and_writes_nothing(tmp_path):
    r = run_cli("stage=status", f"sweep_dir={tmp_path}/nope", f"output_dir={tmp_path}/run", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr == f"spelling_exp: error: sweep_dir={tmp_path}/nope: no such directory; set it to a sweep dir " \
                       "(multirun/<experiment>/<id>)\n", r.stderr
    assert list(tmp_path.iterdir()) == []  # no run dir, no outputs/, no .hydra/


def test_stable_run_id_is_per_job_and_config(tmp_path):
    a, b = tmp_path / "sweep" / "0", tmp_path / "sweep" / "1"
    rid = stable_run_id(a, "sha1", "smoke")
    assert rid == stable_run_id(a, "sha1", "smoke")  # a requeue / rerun of the same job
    assert rid != stable_run_id(b, "sha1", "smoke") and rid != stable_run_id(a, "sha2", "smoke")
    assert rid.startswith("smoke-") and len(rid) == len("smoke-") + 16
    assert stable_run_id(a, "sha1", "my exp/1:x").startswith("my-exp-1-x-")  # only W&B-safe characters
