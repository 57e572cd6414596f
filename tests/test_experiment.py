"""The whole experiment on the real embedded model: smoke preset end to end, caches, W&B
offline, resume after kill / SIGTERM, corrupt checkpoints, and train == eval formatting."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, make_config, run_cli
from helpers.wandb_records import summarize

SMOKE = ["+experiment=smoke"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("smoke") / "run"
    t0 = time.time()
    r = run_cli(*SMOKE, "logger=wandb", f"output_dir={out}", env={"WANDB_MODE": "offline"})
    assert r.returncode == 0, r.stderr[-4000:]
    return out, r, time.time() - t0


def test_smoke_experiment_end_to_end(smoke_run):
    out, r, elapsed = smoke_run
    for d in ("data", "eval_base", "train/adapter", "eval_adapter", "compare", "report"):
        assert (out / d).is_dir(), d
    assert (out / "train" / "adapter" / "adapter_model.safetensors").is_file()
    info = json.loads((out / "train" / "adapter" / "train_info.json").read_text())
    assert info["steps"] == 4 and info["backend"] == "peft" and info["precision"] == "fp32"
    assert info["batching"]["padding_fraction"] < 0.05
    c = json.loads((out / "compare" / "comparison.json").read_text())
    assert set(c["tasks"]) == {"position", "count"}
    for e in c["tasks"].values():
        assert 0 <= e["strict"]["p_mcnemar"] <= 1 and "verdict" in e
    assert "== Answer: base vs LoRA adapter" in r.stdout and "McNemar p" in r.stdout
    html = (out / "report" / "report.html").read_text()
    assert html.index("<h2>Answer</h2>") < html.index("<h2>Plots</h2>") < html.index("<h2>Config</h2>")
    assert html.count("src='data:image/png;base64,") >= 6
    md = (out / "report" / "report.md").read_text()
    assert "![Training loss](plots/training_loss.png)" in md and (out / "report/plots/training_loss.png").is_file()
    assert elapsed < 120


def test_wandb_offline_run_is_complete_and_inside_run_dir(smoke_run):
    out, _, _ = smoke_run
    runs = list((out / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    s = summarize(runs[0])
    assert s["exit_code"] == 0
    for key in ("eval_base/position/accuracy", "eval_adapter/count/no_answer", "compare/position/p_mcnemar",
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


def _start_train(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "spelling_exp", *TRAIN, f"output_dir={out}"], cwd=ROOT,
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
    proc = _start_train(out)
    _wait_for(out / "train" / "checkpoints" / "checkpoint-2" / "trainer_state.json", proc)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 3, output[-3000:]
    assert "training interrupted by signal" in output and "rerun the same command to resume" in output
    ckpts = sorted((out / "train" / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    newest = ckpts[-1]
    assert int(newest.name.split("-")[1]) >= 3  # saved at the step the signal interrupted, not only at save_steps
    if len(ckpts) >= 2:  # corrupt the newest: resume must fall back to the previous one
        (newest / "adapter_model.safetensors").write_bytes(b"\x00\x01garbage")
    r = run_cli(*TRAIN, f"output_dir={out}")
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "train" / "adapter" / "train_info.json").read_text())
    assert info["steps"] == 6
    if len(ckpts) >= 2:
        assert "skipping corrupt checkpoint" in r.stdout + r.stderr
        assert Path(info["resumed_from"]).name == ckpts[-2].name


def test_unsloth_backend_needs_cuda():
    import torch

    from spelling_exp.errors import ConfigError
    from spelling_exp.training.model import choose_backend

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        choose_backend("unsloth")
    assert choose_backend("auto") == "peft"


@pytest.mark.parametrize("model", ["qwen3_4b", "smollm2_135m"])
def test_training_prompt_is_exactly_the_eval_prompt(model, qwen_tokenizer, smol_tokenizer):
    from spelling_exp.model.chat import build_messages, render_chat
    from spelling_exp.training.dataset import tokenize_examples

    cfg = make_config(f"model={model}")
    tok = qwen_tokenizer if model == "qwen3_4b" else smol_tokenizer
    ex = {"id": "x", "user": "How do you spell 'pelican'?", "assistant": "pelican is spelled p-e-l-i-c-a-n."}
    row = tokenize_examples([ex], tok, cfg.model, 512)["x"]
    prompt_ids = [i for i, m in zip(row["input_ids"], row["completion_mask"]) if m == 0]
    answer_ids = [i for i, m in zip(row["input_ids"], row["completion_mask"]) if m == 1]
    eval_prompt = render_chat(tok, build_messages(ex["user"], cfg.model.system_prompt), cfg.model.family, True)
    assert prompt_ids == tok(eval_prompt, add_special_tokens=False)["input_ids"]
    assert tok.decode(answer_ids) == ex["assistant"] + "<|im_end|>"
    if model == "qwen3_4b":
        assert tok.decode(prompt_ids).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
