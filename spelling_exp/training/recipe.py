"""The training recipe: spelling examples -> LoRA adapter in ``<out>/adapter``.

Reads top to bottom, torchtune style: ``setup`` (backend, device, precision, model + LoRA,
bucketed dataset, TRL trainer, the checkpoint to resume) -> ``run`` (train; SIGTERM / SIGUSR1 /
SIGUSR2 save a checkpoint and stop) -> ``save_adapter`` (atomically, with the training log and
info). ``train`` wraps the three in the cache, keyed by everything that determines the adapter
(data files, model identity, LoRA and train settings), so a rerun or a sweep job with the same
settings reuses it. What to train, from which data and where is one ``TrainJob`` (``job.py``).

With the unsloth backend, ``train_adapter`` runs the three in a fresh process (``isolation.py``
says why); it returns the same result and raises the same errors as training in this process.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spelling_exp.config import LoraConfig, TrainBackend, TrainConfig
from spelling_exp.errors import require
from spelling_exp.storage.cache import ArtifactCache, cache_key
from spelling_exp.storage.io import atomic_write_json, read_json
from spelling_exp.training.checkpoints import checkpoint_step, resolve_resume
from spelling_exp.training.isolation import needs_fresh_process, train_adapter_in_fresh_process
from spelling_exp.training.job import LogFn, TrainJob

log = logging.getLogger(__name__)
# 2: model identity and batching settings in the key; 3: the backend that runs, optimizer settings
TRAIN_FORMAT_VERSION = 3
# Settings that change how training is run or logged, not what it produces.
NON_RESULT_KEYS = ("resume", "save_steps", "log_steps", "eval_steps", "save_total_limit", "use_cache")


@dataclass
class TrainResult:
    adapter_dir: Path
    info: dict[str, Any]  # train_info.json
    cache_hit: bool

    def log_history(self) -> list[dict[str, Any]]:
        return json.loads((self.adapter_dir / "training_log.json").read_text())


@dataclass
class TrainingSetup:
    trainer: Any
    model: Any
    backend: str
    device: str
    precision: str
    batching: dict[str, Any]  # statistics of the exact batch order the trainer reads
    trainable_params: int
    resume: Path | None
    resumed_step: int  # read at setup: checkpoint rotation may delete the resumed checkpoint while training
    preemption: Any  # the callback whose flag the signal handler sets


OPTIMIZERS = ("adamw_torch_fused", "adamw_torch", "sgd", "adafactor")


def train_payload(job: TrainJob, data_key: str) -> dict[str, Any]:
    """What the train cache keys: the data's key and the settings, never the job's paths; the backend
    that will run (train.backend=auto resolved), not the one asked for."""
    from spelling_exp.training.model import choose_backend

    train = {k: v for k, v in asdict(job.train).items() if k not in NON_RESULT_KEYS}
    train["backend"] = choose_backend(job.train.backend, job.lora)
    return {"format": TRAIN_FORMAT_VERSION, "data": data_key, "model": job.model.identity(),
            "lora": {k: v for k, v in asdict(job.lora).items() if k != "name"}, "train": train}


def validate_train_config(train: TrainConfig, lora: LoraConfig) -> None:
    """Every value checked before any stage runs; an explicit resume dir must be a valid checkpoint."""
    t = train
    require(t.learning_rate > 0, "train.learning_rate", t.learning_rate, "> 0")
    require(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, ">= 0")
    require(t.optim in OPTIMIZERS, "train.optim", t.optim, f"one of {', '.join(OPTIMIZERS)} (8-bit optimizers need "
            "bitsandbytes, which this project does not install)")
    for key, value in (("batch_size", t.batch_size), ("grad_accum", t.grad_accum), ("save_steps", t.save_steps),
                       ("save_total_limit", t.save_total_limit), ("log_steps", t.log_steps),
                       ("shuffle_buffer", t.shuffle_buffer)):
        require(value >= 1, f"train.{key}", value, ">= 1")
    require(t.max_length >= 8, "train.max_length", t.max_length, ">= 8 (tokens of prompt + answer)")
    require(t.length_tolerance >= 0, "train.length_tolerance", t.length_tolerance, ">= 0")
    require(t.eval_steps >= 0, "train.eval_steps", t.eval_steps, ">= 0 (0: no validation loss)")
    require(0 <= t.warmup_ratio < 1, "train.warmup_ratio", t.warmup_ratio, "in [0, 1)")
    if t.max_steps is not None:  # HF's -1 ("no limit") would silently train epochs instead
        require(t.max_steps >= 1, "train.max_steps", t.max_steps, ">= 1, or null to train train.epochs epochs")
    require(bool(t.max_steps) or t.epochs > 0, "train.epochs", t.epochs, "> 0 (or set train.max_steps >= 1)")
    require(lora.r >= 1, "lora.r", lora.r, ">= 1")
    require(lora.alpha > 0, "lora.alpha", lora.alpha, "> 0")
    require(0 <= lora.dropout < 1, "lora.dropout", lora.dropout, "in [0, 1)")
    require(bool(lora.target_modules), "lora.target_modules", lora.target_modules, "a non-empty list of module names")
    if t.backend == TrainBackend.unsloth:  # auto is resolved at training time (peft for DoRA)
        from spelling_exp.training.model import check_unsloth_lora

        check_unsloth_lora(lora)  # DoRA: one line, exit 2; dropout: a warning
    if t.resume not in ("auto", "never", ""):
        resolve_resume(t.resume, Path("."))


# ------------------------------------------------------------------------------------ setup
def training_arguments(t: TrainConfig, out: Path, steps: int, precision: str, device: str, evaluate: bool,
                       resuming: bool = False) -> Any:
    """TRL's SFTConfig for these settings. ``padding_free`` and ``packing`` are set to False
    explicitly: unsloth turns padding-free batching on when ``padding_free`` is left unset, and
    LeanSFTTrainer's loss needs padded batches (checked again on the built trainer)."""
    import dataclasses

    from trl import SFTConfig

    # transformers 5 renamed gradient_checkpointing to activation_checkpointing; passing the old name
    # prints a FutureWarning on every training, so pass whichever this version knows. The other one
    # (`is_gradient_checkpointing`) comes from inside transformers and PEFT: setup() silences it.
    # the dataclass fields, not __init__'s signature: a patched subclass (unsloth's) may hide it
    known = {f.name for f in dataclasses.fields(SFTConfig)}
    checkpointing = "activation_checkpointing" if "activation_checkpointing" in known else "gradient_checkpointing"
    return SFTConfig(
        **{checkpointing: t.gradient_checkpointing}, optim=t.optim, weight_decay=t.weight_decay,
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.learning_rate,
        lr_scheduler_type=str(t.lr_scheduler), warmup_steps=math.ceil(t.warmup_ratio * steps), num_train_epochs=1,
        max_steps=steps, logging_steps=t.log_steps, logging_first_step=True, save_strategy="steps",
        save_steps=t.save_steps, save_total_limit=t.save_total_limit, bf16=precision == "bf16",
        fp16=precision == "fp16", use_cpu=device == "cpu",
        seed=t.seed, data_seed=t.seed, report_to="none", max_length=t.max_length, completion_only_loss=True,
        padding_free=False, packing=False,
        dataloader_num_workers=0, disable_tqdm=False, save_only_model=False, per_device_eval_batch_size=t.batch_size,
        # eval_on_start: the curve's first point is the untrained adapter, so "did it fall?" has an answer;
        # a resumed run has that point from its first attempt (and its curve continues after the checkpoint)
        eval_strategy="steps" if evaluate else "no", eval_steps=t.eval_steps or None,
        eval_on_start=evaluate and not resuming)


def setup(job: TrainJob, on_log: LogFn | None = None) -> TrainingSetup:
    import warnings

    from spelling_exp.model.loading import resolve_device
    from spelling_exp.training.model import choose_backend, load_trainable_model, resolve_precision

    # transformers' and PEFT's own reads of the renamed property, on every training: noise, not a problem
    warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
    model_cfg, lora, t, out = job.model, job.lora, job.train, job.out
    resume = resolve_resume(t.resume, out / "checkpoints")
    backend = choose_backend(t.backend, lora)
    device = resolve_device(model_cfg.device)
    precision = resolve_precision(t.precision, device)
    # the model first: with the unsloth backend, loading it imports unsloth before trl and transformers
    model, tok = load_trainable_model(model_cfg, lora, backend, job.cache_dir, t.max_length, t.seed,
                                      t.gradient_checkpointing)
    from spelling_exp.training.dataset import build_train_dataset, build_val_dataset
    from spelling_exp.training.trainer import (
        check_padded_batches,
        log_callback,
        make_trainer_class,
        preemption_callback,
    )

    dataset, batching = build_train_dataset(job.data_dir / "examples_train.jsonl", tok, model_cfg, t)
    val_dataset = (build_val_dataset(job.data_dir / "examples_val.jsonl", tok, model_cfg, t.max_length)
                   if t.eval_steps > 0 else None)
    steps = math.ceil(batching["batches"] / t.grad_accum)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %s with %s on %s (%s): %d steps, batch %d x accum %d, %d trainable params, padding %.1f%%",
             model_cfg.name, backend, device, precision, steps, t.batch_size, t.grad_accum, trainable,
             100 * batching["padding_fraction"])

    args = training_arguments(t, out, steps, precision, device, val_dataset is not None, resume is not None)
    preempt = preemption_callback()
    callbacks = [preempt] + ([log_callback(on_log)] if on_log else [])
    trainer = make_trainer_class()(model=model, args=args, train_dataset=dataset, eval_dataset=val_dataset,
                                   processing_class=tok, callbacks=callbacks)
    check_padded_batches(trainer)
    resumed_step = checkpoint_step(resume) if resume else 0
    return TrainingSetup(trainer, model, backend, device, precision, batching, trainable, resume, resumed_step,
                         preempt)


# -------------------------------------------------------------------------------------- run
def run(s: TrainingSetup, out: Path) -> None:
    """Train to the end, or checkpoint and raise TrainingInterrupted on a preemption signal."""
    from spelling_exp.training.trainer import interrupted, preemption_signals

    if s.resume is not None:
        log.info("resuming from %s (step %d)", s.resume, s.resumed_step)

    def on_signal(signum: int) -> None:
        log.warning("received signal %d: checkpointing after this step, then stopping", signum)

    with preemption_signals(s.preemption, on_signal) as previous_handlers:
        s.trainer.train(resume_from_checkpoint=str(s.resume) if s.resume else None)
    signum = s.preemption.signal_received
    if signum is not None:
        raise interrupted(signum, s.trainer.state.global_step, previous_handlers.get(signum), out)


# ---------------------------------------------------------------------------------- cleanup
def validation_summary(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The training check: loss on the held-out training examples (unseen words) at the first and
    last evaluation. ``fell``: the last is below the first by more than 1%. None without
    validation (train.eval_steps=0). A check that training took, never a study outcome."""
    points = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h and "step" in h]
    if not points:
        return None
    (s0, first), (s1, last) = points[0], points[-1]
    return {"first_step": s0, "first": first, "last_step": s1, "last": last, "min": min(v for _, v in points),
            "evaluations": len(points), "fell": last < 0.99 * first}


def library_versions(backend: str) -> dict[str, str | None]:
    """The versions that trained the adapter (the record of what ran, beside the settings)."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["torch", "transformers", "peft", "trl"] + (["unsloth", "unsloth_zoo"] if backend == "unsloth" else [])
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def save_adapter(s: TrainingSetup, out: Path, seconds: float) -> dict[str, Any]:
    """Adapter + training_log.json + train_info.json into ``<out>/adapter``, all or nothing."""
    tmp = out / f".adapter.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    s.model.save_pretrained(str(tmp))
    history = s.trainer.state.log_history
    atomic_write_json(tmp / "training_log.json", history)
    steps = s.trainer.state.global_step
    args = s.trainer.args
    ran = "bf16" if getattr(args, "bf16", False) else "fp16" if getattr(args, "fp16", False) else "fp32"
    info = {"backend": s.backend, "device": s.device, "precision": ran, "precision_requested": s.precision,
            "optimizer": str(getattr(args.optim, "value", args.optim)), "weight_decay": args.weight_decay,
            "versions": library_versions(s.backend), "steps": steps,
            "resumed_from": str(s.resume) if s.resume else None,
            "steps_run_this_session": steps - s.resumed_step,
            "train_seconds": seconds, "trainable_params": s.trainable_params, "batching": s.batching,
            "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None),
            "validation": validation_summary(history)}
    atomic_write_json(tmp / "train_info.json", info)
    if (out / "adapter").exists():
        shutil.rmtree(out / "adapter")
    os.replace(tmp, out / "adapter")
    return info


def train_adapter(job: TrainJob, on_log: LogFn | None = None) -> dict[str, Any]:
    """setup -> run -> save_adapter, without the cache; in a fresh process for unsloth (``isolation.py``)."""
    from spelling_exp.training.model import choose_backend

    backend = choose_backend(job.train.backend, job.lora)
    if needs_fresh_process(backend):
        return train_adapter_in_fresh_process(train_in_this_process, job, backend, on_log)
    return train_in_this_process(job, on_log)


def train_in_this_process(job: TrainJob, on_log: LogFn | None = None) -> dict[str, Any]:
    """setup -> run -> save_adapter here, returning the train_info; also what the fresh process runs."""
    s = setup(job, on_log)
    t0 = time.perf_counter()
    run(s, job.out)
    return save_adapter(s, job.out, time.perf_counter() - t0)


def train(job: TrainJob, data_key: str, on_log: LogFn | None = None) -> TrainResult:
    """The adapter for ``job`` in ``<job.out>/adapter``: from the cache, or trained (and cached).
    ``data_key`` is the data stage's key for ``job.data_dir``."""
    adapter = job.out / "adapter"
    if not job.train.use_cache:
        return TrainResult(adapter, train_adapter(job, on_log), False)
    payload = train_payload(job, data_key)
    key = cache_key(payload)
    # Training runs under the cache's per-key lock: identical jobs of a sweep train once.
    hit = ArtifactCache(job.cache_dir, "train").compute_in_place(key, payload, adapter,
                                                                 lambda: train_adapter(job, on_log))
    info = read_json(adapter / "train_info.json")
    if hit:
        log.info("adapter reused from cache (%s): %d steps, final loss %s", key, info["steps"], info["final_loss"])
    return TrainResult(adapter, info, hit)
