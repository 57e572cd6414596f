"""The whole experiment on the real embedded model: smoke preset end to end, caches, W&B
offline, resume after kill / SIGTERM, corrupt checkpoints, and train == eval formatting."""
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import ROOT, make_config, run_cli
from helpers.wandb_records import summarize

from spelling_exp.data.build import prepare_data

SMOKE = ["+experiment=smoke"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("smoke") / "run"
    t0 = time.time()
    r = run_cli(*SMOKE, "logger=wandb", f"output_dir={out}", env={"WANDB_MODE": "offline"})
    assert r.returncode == 0, r.stderr[-4000:]
    return out, r, time.time() - t0


def test_smoke_experiment_end_to_end(smoke_run):
    out, r, _ = smoke_run
    for d in ("data", "eval_base", "train/adapter", "eval_adapter", "compare", "report"):
        assert (out / d).is_dir(), d
    assert (out / "train" / "adapter" / "adapter_model.safetensors").is_file()
    info = json.loads((out / "train" / "adapter" / "train_info.json").read_text())
    assert info["steps"] == 4 and info["backend"] == "peft" and info["precision"] == "fp32"
    # what ran, not what was asked: the optimizer the trainer built and the library versions
    assert info["optimizer"] == "adamw_torch_fused" and info["weight_decay"] == 0.0
    assert info["versions"]["torch"] and info["versions"]["peft"] and "unsloth" not in info["versions"]
    assert info["batching"]["padding_fraction"] < 0.05
    # the training check: validation loss from before the first step (eval_on_start) to the last
    v = info["validation"]
    assert v["first_step"] == 0 and v["last_step"] == 4 and v["evaluations"] == 3 and v["last"] > 0
    c = json.loads((out / "compare" / "comparison.json").read_text())
    assert set(c["tasks"]) == {"position", "count"}
    for e in c["tasks"].values():
        assert 0 <= e["strict"]["p"] <= e["strict"]["p_holm"] <= 1 and "verdict" in e
        # every scope is clustered by word: the sign-flip test over whole words
        assert e["strict"]["analysis"] == "primary" and e["strict"]["test"] == "sign_flip"
    assert "== Answer: base vs LoRA adapter" in r.stdout and "Holm p" in r.stdout
    html = (out / "report" / "report.html").read_text()
    assert html.index("<h2>Answer</h2>") < html.index("<h2>Plots</h2>") < html.index("<h2>Config</h2>")
    assert html.count("src='data:image/png;base64,") >= 6
    md = (out / "report" / "report.md").read_text()
    assert "**Training check**" in md and "spelling adapter: validation loss" in md
    assert "![Training loss](plots/training_loss.png)" in md and (out / "report/plots/training_loss.png").is_file()


def test_wandb_offline_run_is_complete_and_inside_run_dir(smoke_run):
    out, _, _ = smoke_run
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    s = summarize(runs[0])
    assert s["exit_code"] == 0
    for key in ("eval_base/position/accuracy", "eval_adapter/count/no_answer", "compare/position/p_holm",
                "train/loss", "train/global_step"):
        assert key in s["history"], key
    assert len(s["history"]["train/loss"]) >= 3
    assert s["summary"]["train/steps"] == 4
    assert "eval_base/predictions/nrows" in s["history"]  # the per-question table
    assert s["kinds"].get("artifact", 0) >= 1  # the report
    assert s["config"]["lora"]["r"] == 8 and s["config"]["model"]["trust_remote_code"] is False
    assert not (ROOT / "wandb").exists()


def test_base_eval_cache_reused_with_different_lora_rank(smoke_run, tmp_path):
    out = tmp_path / "r4"
    r = run_cli(*SMOKE, "lora.r=4", "lora.alpha=8", "stages=[data,eval_base,train]", f"output_dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    logs = r.stdout + r.stderr
    assert "evaluation eval_base reused from cache" in logs
    assert "adapter reused from cache" not in logs  # a different rank trains its own adapter
    base_a = json.loads((smoke_run[0] / "eval_base" / "metrics.json").read_text())
    base_b = json.loads((out / "eval_base" / "metrics.json").read_text())
    assert base_a == base_b
    cfg = json.loads((out / "train" / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 4


TRAIN = [*SMOKE, "stage=train", "train.max_steps=6", "train.save_steps=2", "train.use_cache=false"]


def _start_train(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spelling_exp", *TRAIN, *extra, f"output_dir={out}"], cwd=ROOT,
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline, f"timed out waiting for {path}"
        time.sleep(0.05)


def test_resume_after_kill_does_not_redo_finished_steps(tmp_path):
    out = tmp_path / "run"
    proc = _start_train(out)
    _wait_for(out / "train" / "checkpoints" / "checkpoint-2" / "trainer_state.json", proc)
    time.sleep(0.5)
    proc.kill()
    proc.wait()
    assert not (out / "train" / "adapter").exists()
    r = run_cli(*TRAIN, f"output_dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "train" / "adapter" / "train_info.json").read_text())
    resumed = int(Path(info["resumed_from"]).name.split("-")[1])
    assert resumed >= 2 and info["steps"] == 6
    assert info["steps_run_this_session"] == 6 - resumed


def test_sigterm_checkpoints_then_resume_skips_corrupt_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = _start_train(out, "logger=wandb")
    _wait_for(out / "train" / "checkpoints" / "checkpoint-2" / "trainer_state.json", proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 3, output[-3000:]
    assert "training interrupted by signal" in output and "rerun the same command to resume" in output
    # an interruption is neither a success nor a user error: a sweep rerun redoes the job
    assert json.loads((out / "job_result.json").read_text())["status"] == "interrupted"
    ckpts = sorted((out / "train" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    newest = ckpts[-1]
    assert int(newest.name.split("-")[1]) >= 3  # saved at the step the signal interrupted, not only at save_steps
    if len(ckpts) >= 2:  # corrupt the newest: resume must fall back to the previous one
        (newest / "adapter_model.safetensors").write_bytes(b"\x00\x01garbage")
    r = run_cli(*TRAIN, "logger=wandb", f"output_dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "train" / "adapter" / "train_info.json").read_text())
    assert info["steps"] == 6
    # the preempted run and its resumption are one W&B run: both attempts log under the job's stable id
    run_id = json.loads((out / "job_result.json").read_text())["wandb_run_id"]
    attempts = sorted((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(attempts) == 2 and all(summarize(f)["run_id"] == run_id for f in attempts)
    assert min(summarize(attempts[1])["history"]["train/global_step"]) > 2  # the curve continues
    if len(ckpts) >= 2:
        assert "skipping corrupt checkpoint" in r.stdout + r.stderr
        assert Path(info["resumed_from"]).name == ckpts[-2].name


def test_resume_from_a_checkpoint_dir_with_any_name(tmp_path):
    """Review bug: train.resume=<dir not named checkpoint-N> crashed after training, before saving."""
    first = tmp_path / "first"
    r = run_cli(*TRAIN, f"output_dir={first}")
    assert r.returncode == 0, r.stderr[-3000:]
    saved = tmp_path / "my saved state"
    shutil.copytree(first / "train" / "checkpoints" / "checkpoint-2", saved)
    r = run_cli(*TRAIN, f"train.resume={saved}", f"output_dir={tmp_path}/second")
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((tmp_path / "second" / "train" / "adapter" / "train_info.json").read_text())
    assert info["resumed_from"] == str(saved) and info["steps"] == 6 and info["steps_run_this_session"] == 4


def test_eval_adapter_evaluates_this_runs_adapter_not_a_configured_one(smoke_run, tmp_path):
    """Review bug: a configured adapter path used to replace the adapter trained in the run."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run[0], run, ignore=shutil.ignore_patterns("wandb"))
    r = run_cli(*SMOKE, "stages=[eval_adapter]", "eval.use_cache=false", f"eval.adapter_path={tmp_path}/elsewhere",
                f"output_dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    meta = json.loads((run / "eval_adapter" / "metrics.json").read_text())["meta"]
    assert meta["adapter"] == str(run / "train" / "adapter")


def test_identical_training_runs_give_identical_adapter_bytes(smoke_run, tmp_path):
    """Two fresh processes, the same training config: byte-identical adapters. This needed LoRA's
    initialisation seeded (it came from an unseeded RNG, so no two runs matched although the
    training cache treated them as one result).

    The second run also sets eval.adapter_path, guarding a review bug: model.adapter_path used to
    be loaded as the starting point of training while the training cache key ignored it. Training
    never reads an adapter setting now, so the adapters must not differ."""
    one_step = [*SMOKE, "stage=train", "train.max_steps=1", "train.use_cache=false"]
    a = run_cli(*one_step, f"output_dir={tmp_path}/a")
    b = run_cli(*one_step, f"eval.adapter_path={smoke_run[0]}/train/adapter", f"output_dir={tmp_path}/b")
    assert a.returncode == 0 and b.returncode == 0, b.stderr[-3000:]
    weights = [(tmp_path / d / "train" / "adapter" / "adapter_model.safetensors").read_bytes() for d in "ab"]
    assert weights[0] == weights[1]


def test_moved_run_dir_still_reports(smoke_run, tmp_path):
    """Review bug: comparison.json stored absolute eval dirs, so a moved run broke stage=report."""
    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(smoke_run[0], first, ignore=shutil.ignore_patterns("wandb"))
    first.rename(moved)
    c = json.loads((moved / "compare" / "comparison.json").read_text())
    assert (c["base_dir"], c["adapter_dir"]) == ("../eval_base", "../eval_adapter")
    (moved / "report" / "report.html").unlink()
    r = run_cli(*SMOKE, "stage=report", f"output_dir={moved}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (moved / "report" / "report.html").is_file() and "Holm p" in r.stdout


def test_smoke_with_both_control_arms_gives_every_contrast(smoke_run, tmp_path):
    """The control arms: a placebo adapter (shuffled spellings) and a random-letters adapter (format
    only), trained exactly like the spelling adapter and evaluated on the same questions; the base
    evaluation is shared (from the cache), the report's headline is spelling vs placebo, and the
    four named contrasts are in comparison.json."""
    out = tmp_path / "ctl"
    stages = ("stages=[data,eval_base,train,train_control,train_random,eval_adapter,eval_control,eval_random,"
              "compare,report]")
    r = run_cli(*SMOKE, stages, f"output_dir={out}")
    assert r.returncode == 0, r.stderr[-4000:]
    assert "evaluation eval_base reused from cache" in r.stdout + r.stderr
    for d in ("train/adapter", "train_control/adapter", "eval_control", "train_random/adapter", "eval_random"):
        assert (out / d).is_dir(), d
    weights = {d: (out / d / "adapter" / "adapter_model.safetensors").read_bytes()
               for d in ("train", "train_control", "train_random")}
    assert len(set(weights.values())) == 3  # three different adapters, not copies
    # Same questions for all four models, and the same training recipe for the three adapters.
    q = [(out / d / "questions.jsonl").read_text() for d in ("eval_base", "eval_adapter", "eval_control",
                                                             "eval_random")]
    assert q[0] == q[1] == q[2] == q[3]
    ti = [json.loads((out / d / "adapter" / "train_info.json").read_text()) for d in weights]
    assert ti[0]["steps"] == ti[1]["steps"] == ti[2]["steps"]
    c = json.loads((out / "compare" / "comparison.json").read_text())
    assert c["headline"] == "spelling_vs_placebo"
    assert {"spelling_vs_random", "placebo_vs_random", "spelling_vs_placebo", "random_vs_base"} <= set(c["control"])
    sp = c["control"]["spelling_vs_placebo"]
    for task in ("position", "count"):
        s = sp["tasks"][task]["strict"]
        assert s["analysis"] == "primary" and "p_holm" in s
        assert s["diff"] == pytest.approx(s["adapter"] - s["base"])
        assert c["tasks"][task]["strict"]["analysis"] == "secondary"
        # the three accuracies agree across the three pairings
        assert s["base"] == c["control"]["placebo_vs_base"]["tasks"][task]["strict"]["adapter"]
        assert s["adapter"] == c["tasks"][task]["strict"]["adapter"]
    md = (out / "report" / "report.md").read_text()
    assert md.index("Spelling vs placebo") < md.index("Spelling adapter vs base model") < md.index("## Plots")
    assert "| position | " in md and "headline, primary" in md
    assert "Every contrast between the arms" in md and "format exposure alone" in md
    assert "random-letters adapter: validation loss" in md
    assert "== Answer: base vs the control arms vs the spelling adapter" in r.stdout
    # The placebo data (built by the run, so a cache hit here): the same examples, words,
    # templates and separators, each word's letters in a wrong order; the same hold-out.
    cfg = make_config(*SMOKE)
    shuffled = replace(cfg.data, examples=replace(cfg.data.examples, spellings="shuffled"))
    real_data = prepare_data(cfg.data, cfg.template, cfg.model, cfg.paths.cache_dir)
    placebo_data = prepare_data(shuffled, cfg.template, cfg.model, cfg.paths.cache_dir)
    assert real_data.cache_hit and placebo_data.cache_hit and real_data.key != placebo_data.key
    for name in ("holdout_test.jsonl", "holdout_validation.jsonl"):
        assert (real_data.dir / name).read_bytes() == (placebo_data.dir / name).read_bytes()
    rows = [[json.loads(line) for line in open(d.dir / "examples_train.jsonl")] for d in (real_data, placebo_data)]
    assert len(rows[0]) == len(rows[1])
    for a, b in zip(*rows):
        assert (a["word"], a["template_id"], a["separator"]) == (b["word"], b["template_id"], b["separator"])
        if len(set(a["word"])) > 1:
            assert a["assistant"] + a["user"] != b["assistant"] + b["user"]


def _shape(x):
    """The keys of nested dicts (lists by their first element): what a reader of the file relies on.
    Tallies keyed by what the replies said (confusion, error offsets) have data-dependent keys."""
    if isinstance(x, dict):
        return {k: "tally" if k in ("confusion", "error_offsets") else _shape(v) for k, v in x.items()}
    if isinstance(x, list) and x and isinstance(x[0], dict):
        return [_shape(x[0])]
    return "value"


@pytest.mark.skipif(importlib.util.find_spec("xllamacpp") is None, reason="xllamacpp not installed")
def test_llamacpp_backend_runs_the_pipeline_with_the_same_outputs(smoke_run, tmp_path):
    """eval.backend=llamacpp on the smoke run's own trained adapter (converted to a GGUF LoRA):
    evaluations, comparison and report with the same structure as the hf backend's."""
    run = tmp_path / "run"
    shutil.copytree(smoke_run[0], run, ignore=shutil.ignore_patterns("wandb", "eval_*", "compare", "report"))
    r = run_cli(*SMOKE, "stages=[eval_base,eval_adapter,compare,report]", "eval.backend=llamacpp",
                f"output_dir={run}")
    assert r.returncode == 0, r.stderr[-3000:]
    for d in ("eval_base", "eval_adapter"):
        hf, llama = (json.loads((root / d / "metrics.json").read_text()) for root in (smoke_run[0], run))
        assert llama["meta"]["identity"]["generation"]["backend"] == "llamacpp"
        hf["meta"].pop("identity"), llama["meta"].pop("identity")
        # a server cannot score candidate answers: forced choice is the hf backend's alone, and said so
        assert "forced_choice" in hf and "forced_choice" not in llama
        hf.pop("forced_choice")
        assert _shape(llama) == _shape(hf)
        assert (run / d / "llamacpp_server.log").is_file()  # beside the evaluation, not in the cache entry
    hf, llama = (json.loads((root / "compare" / "comparison.json").read_text()) for root in (smoke_run[0], run))
    for e in [*hf["tasks"].values(), hf["overall"]]:
        e.pop("forced_choice")
    assert _shape(llama) == _shape(hf)
    assert "the llamacpp backend cannot score candidate answers; generation only" in r.stdout + r.stderr
    assert (run / "report" / "report.html").is_file() and "== Answer: base vs LoRA adapter" in r.stdout
    assert "Evaluation: model smollm2_135m, backend llamacpp," in (run / "report" / "report.md").read_text()
