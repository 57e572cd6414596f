"""Training parts without a training run: backend choice, resume resolution, train == eval prompts."""
import json

import pytest
from helpers import make_config

from spelling_exp.errors import ConfigError
from spelling_exp.training.checkpoints import checkpoint_step, resolve_resume


def test_unsloth_backend_needs_cuda():
    import torch

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


def _checkpoint(path, step):
    """A checkpoint with every file in its real format: safetensors, zip archives (what torch.save writes)."""
    import zipfile

    import numpy as np
    from safetensors.numpy import save_file

    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    save_file({"lora_A": np.ones((4, 8), dtype=np.float32)}, str(path / "adapter_model.safetensors"))
    for name in ("optimizer.pt", "scheduler.pt"):
        with zipfile.ZipFile(path / name, "w") as z:
            z.writestr("archive/data.pkl", b"x" * 4096)
    return path


def test_resume_resolution(tmp_path):
    ckpts = tmp_path / "checkpoints"
    assert resolve_resume("auto", ckpts) is None and resolve_resume("never", ckpts) is None
    with pytest.raises(ConfigError, match="not a valid training checkpoint"):
        resolve_resume(str(tmp_path / "nope"), ckpts)
    # a valid checkpoint under any name; its step comes from trainer_state.json, not the name
    state = _checkpoint(tmp_path / "saved state", 7)
    assert resolve_resume(str(state), ckpts) == state and checkpoint_step(state) == 7


@pytest.mark.parametrize("damage", ["optimizer truncated", "optimizer flipped", "adapter truncated",
                                    "scheduler truncated", "state garbage", "optimizer missing"])
def test_damaged_newest_checkpoint_is_skipped(tmp_path, damage):
    from spelling_exp.training.checkpoints import newest_valid_checkpoint

    ckpts = tmp_path / "checkpoints"
    _checkpoint(ckpts / "checkpoint-2", 2)
    newest = _checkpoint(ckpts / "checkpoint-4", 4)
    assert newest_valid_checkpoint(ckpts) == newest
    target = {"optimizer": "optimizer.pt", "adapter": "adapter_model.safetensors", "scheduler": "scheduler.pt",
              "state": "trainer_state.json"}[damage.split()[0]]
    data = (newest / target).read_bytes()
    if damage.endswith("truncated"):
        (newest / target).write_bytes(data[: len(data) // 2])
    elif damage.endswith("flipped"):
        i = data.index(b"xxxx")
        (newest / target).write_bytes(data[:i] + b"y" + data[i + 1:])  # same size: only the CRC notices
    elif damage.endswith("missing"):
        (newest / target).unlink()
    else:
        (newest / target).write_text("{not json")
    assert newest_valid_checkpoint(ckpts) == ckpts / "checkpoint-2"


def test_the_training_check_says_plainly_when_validation_loss_did_not_fall():
    from spelling_exp.analysis.report import training_check_lines
    from spelling_exp.training.recipe import validation_summary

    history = [{"step": 0, "eval_loss": 2.0}, {"step": 5, "loss": 1.9}, {"step": 10, "eval_loss": 1.5}]
    fell = validation_summary(history)
    assert fell == {"first_step": 0, "first": 2.0, "last_step": 10, "last": 1.5, "min": 1.5, "evaluations": 2,
                    "fell": True}
    flat = validation_summary([{"step": 0, "eval_loss": 2.0}, {"step": 10, "eval_loss": 1.995}])
    assert flat["fell"] is False  # within 1% is not a fall
    assert validation_summary([{"step": 5, "loss": 1.9}]) is None
    lines = training_check_lines({"spelling adapter": {"validation": fell}, "placebo adapter": {"validation": flat},
                                  "other": {"validation": None}, "absent": None})
    assert "fell from 2.000 (step 0) to 1.500 (step 10)" in lines[0]
    assert "did not fall" in lines[1] and "cannot be told from a training that did not take" in lines[1]
    assert "train.eval_steps=0" in lines[2] and len(lines) == 3
