"""Train stage recipe: spelling examples -> LoRA adapter in <run_dir>/train/adapter.

Reads top to bottom: cache lookup -> backend/device/precision -> model + LoRA -> bucketed
dataset -> TRL trainer -> train (resuming the newest valid checkpoint; SIGTERM/SIGUSR1/SIGUSR2
save a checkpoint and stop) -> save the adapter atomically -> store it in the cache, keyed by
everything that determines it (data, model, LoRA and train settings), so a rerun or a sweep
job with the same settings reuses it.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..cache import ArtifactCache, cache_key
from ..context import RunContext
from ..errors import SpellingExpError
from ..io import atomic_write_json

log = logging.getLogger(__name__)
TRAIN_FORMAT_VERSION = 1
PREEMPTION_SIGNALS = tuple(getattr(signal, s) for s in ("SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, s))
# Settings that change how training is run or logged, not what it produces.
NON_RESULT_KEYS = ("resume", "save_steps", "log_steps", "eval_steps", "save_total_limit")


class TrainingInterrupted(SpellingExpError):
    exit_code = 3


def train_payload(cfg: Any) -> dict[str, Any]:
    from .data import data_cache_payload

    train = {k: v for k, v in asdict(cfg.train).items() if k not in NON_RESULT_KEYS}
    return {"format": TRAIN_FORMAT_VERSION, "data": cache_key(data_cache_payload(cfg)),
            "model": {k: getattr(cfg.model, k) for k in ("family", "path", "gguf_file", "revision", "dtype",
                                                         "system_prompt", "chat_template_kwargs")},
            "lora": {k: v for k, v in asdict(cfg.lora).items() if k != "name"}, "train": train}


def log_train_record(tracker, record: dict[str, Any], step: int) -> None:
    data = {f"train/{k}": v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
    if data:
        tracker.log({**data, "train/global_step": step})


def _tracker_callback(tracker):
    from transformers import TrainerCallback

    class TrackerCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            log_train_record(tracker, logs or {}, state.global_step)

    return TrackerCallback()


def _preemption_callback():
    from transformers import TrainerCallback

    class PreemptionCallback(TrainerCallback):
        """A signal only sets a flag; the step in flight finishes, then we checkpoint and stop."""
        signal_received: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if self.signal_received is not None:
                control.should_save = True
                control.should_training_stop = True

    return PreemptionCallback()


def train_adapter(ctx: RunContext, out: Path) -> dict[str, Any]:
    from trl import SFTConfig

    from ..models import resolve_device
    from ..train import (
        build_train_dataset,
        build_val_dataset,
        choose_backend,
        load_trainable_model,
        make_trainer_class,
        newest_valid_checkpoint,
        resolve_precision,
    )
    from .data import prepare_data

    cfg, t = ctx.cfg, ctx.cfg.train
    data = prepare_data(cfg)
    backend = choose_backend(t.backend)
    device = resolve_device(cfg.model.device)
    precision = resolve_precision(t.precision, device)
    model, tok = load_trainable_model(cfg, backend, device)
    dataset, batch_info = build_train_dataset(data.dir / "examples_train.jsonl", tok, cfg)
    val_dataset = build_val_dataset(data.dir / "examples_val.jsonl", tok, cfg) if t.eval_steps > 0 else None
    steps = math.ceil(batch_info["batches"] / t.grad_accum)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %s with %s on %s (%s): %d steps, batch %d x accum %d, %d trainable params, padding %.1f%%",
             cfg.model.name, backend, device, precision, steps, t.batch_size, t.grad_accum, trainable,
             100 * batch_info["padding_fraction"])

    args = SFTConfig(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.learning_rate, lr_scheduler_type=t.lr_scheduler,
        warmup_steps=math.ceil(t.warmup_ratio * steps), num_train_epochs=1, max_steps=steps,
        logging_steps=t.log_steps, logging_first_step=True, save_strategy="steps", save_steps=t.save_steps,
        save_total_limit=t.save_total_limit, bf16=precision == "bf16", fp16=precision == "fp16",
        use_cpu=device == "cpu", gradient_checkpointing=t.gradient_checkpointing, seed=t.seed, data_seed=t.seed,
        report_to="none", max_length=t.max_length, completion_only_loss=True, dataloader_num_workers=0,
        disable_tqdm=False, save_only_model=False, per_device_eval_batch_size=t.batch_size,
        eval_strategy="steps" if val_dataset is not None else "no", eval_steps=t.eval_steps or None)
    preempt = _preemption_callback()
    trainer = make_trainer_class()(model=model, args=args, train_dataset=dataset, eval_dataset=val_dataset,
                                   processing_class=tok, callbacks=[_tracker_callback(ctx.tracker), preempt])

    resume = None
    if t.resume == "auto":
        resume = newest_valid_checkpoint(out / "checkpoints")
    elif t.resume not in ("never", ""):
        resume = Path(t.resume)
    if resume is not None:
        log.info("resuming from %s", resume)

    def on_signal(signum, frame):
        preempt.signal_received = signum
        log.warning("received signal %d: checkpointing after this step, then stopping", signum)

    old = {s: signal.signal(s, on_signal) for s in PREEMPTION_SIGNALS}
    t0 = time.perf_counter()
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if preempt.signal_received is not None:
        previous = old.get(preempt.signal_received)
        if callable(previous):
            # e.g. submitit's handler on Slurm: now that the checkpoint is saved, let it requeue the job;
            # the requeued job reruns the same config in the same dir and resumes from the checkpoint.
            log.warning("checkpoint saved at step %d; handing the signal to the launcher", trainer.state.global_step)
            previous(preempt.signal_received, None)
        raise TrainingInterrupted(
            f"training interrupted by signal {preempt.signal_received} at step {trainer.state.global_step}; "
            f"checkpoint saved in {out / 'checkpoints'}; rerun the same command to resume")

    tmp = out / f".adapter.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    history = trainer.state.log_history
    atomic_write_json(tmp / "training_log.json", history)
    resumed_step = int(resume.name.split("-")[-1]) if resume else 0
    info = {"backend": backend, "device": device, "precision": precision, "steps": trainer.state.global_step,
            "resumed_from": str(resume) if resume else None,
            "steps_run_this_session": trainer.state.global_step - resumed_step,
            "train_seconds": time.perf_counter() - t0,
            "trainable_params": trainable, "batching": batch_info,
            "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None)}
    atomic_write_json(tmp / "train_info.json", info)
    if (out / "adapter").exists():
        shutil.rmtree(out / "adapter")
    os.replace(tmp, out / "adapter")
    return info


def run_train_stage(ctx: RunContext) -> dict[str, Any]:
    cfg = ctx.cfg
    out = ctx.run_dir / "train"
    payload = train_payload(cfg)
    key = cache_key(payload)
    cache = ArtifactCache(cfg.data.cache_dir, "train")
    if not cfg.train.use_cache:
        info = train_adapter(ctx, out)
    else:
        # Training runs under the cache's per-key lock: identical jobs of a sweep train once.
        trained: dict[str, Any] = {}
        hit = cache.compute_in_place(key, payload, out / "adapter", lambda: trained.update(train_adapter(ctx, out)))
        if hit:
            info = json.loads((out / "adapter" / "train_info.json").read_text())
            log.info("adapter reused from cache (%s): %d steps, final loss %s", key, info["steps"],
                     info["final_loss"])
            for record in json.loads((out / "adapter" / "training_log.json").read_text()):
                log_train_record(ctx.tracker, record, record.get("step", 0))  # the curve belongs to this run too
            ctx.tracker.summary({"train/steps": info["steps"], "train/final_loss": info["final_loss"],
                                 "train/cache_hit": True})
            return info
        info = trained
    ctx.tracker.summary({"train/steps": info["steps"], "train/final_loss": info["final_loss"],
                         "train/padding_fraction": info["batching"]["padding_fraction"], "train/cache_hit": False})
    return info
