"""The training recipe: spelling examples -> LoRA adapter in ``<out>/adapter``.

Reads top to bottom, torchtune style: ``setup`` (backend, device, precision, model + LoRA,
bucketed dataset, TRL trainer, the checkpoint to resume) -> ``run`` (train; SIGTERM / SIGUSR1 /
SIGUSR2 save a checkpoint and stop) -> ``save_adapter`` (atomically, with the training log and
info). ``train`` wraps the three in the cache, keyed by everything that determines the adapter
(data files, model identity, LoRA and train settings), so a rerun or a sweep job with the same
settings reuses it.

Unsloth trains in a fresh process. It must be imported before transformers / trl / peft, and by
the time the train stage runs, the data or evaluation stages (even the tokenizer) have imported
them in this process. So with the unsloth backend, ``train_adapter`` runs setup -> run ->
save_adapter in a child Python process that imports unsloth first (``train_adapter_in_fresh_process``),
unless this process imported unsloth first itself. The child also keeps unsloth's global patches
of transformers out of the evaluation stages that follow in this process. The parent holds the
cache lock, forwards preemption signals to the child (which checkpoints and stops, exit 3), turns
the child's outcome back into the same result or error, and replays the child's training log to
``on_log`` (the tracker's curve) when it ends.
"""
from __future__ import annotations

import json
import logging
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from spelling_exp.config import LoraConfig, ModelConfig, TrainBackend, TrainConfig
from spelling_exp.errors import ConfigError, SpellingExpError, TrainingInterrupted, raise_interrupted, require
from spelling_exp.storage.cache import ArtifactCache, cache_key
from spelling_exp.storage.io import atomic_write_json, read_json
from spelling_exp.training.checkpoints import checkpoint_step, resolve_resume

log = logging.getLogger(__name__)
TRAIN_FORMAT_VERSION = 2  # 2: model identity and batching settings in the key
# Settings that change how training is run or logged, not what it produces.
NON_RESULT_KEYS = ("resume", "save_steps", "log_steps", "eval_steps", "save_total_limit", "use_cache")
LogFn = Callable[[dict[str, Any], int], None]


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


def train_payload(model: ModelConfig, lora: LoraConfig, train: TrainConfig, data_key: str) -> dict[str, Any]:
    return {"format": TRAIN_FORMAT_VERSION, "data": data_key, "model": model.identity(),
            "lora": {k: v for k, v in asdict(lora).items() if k != "name"},
            "train": {k: v for k, v in asdict(train).items() if k not in NON_RESULT_KEYS}}


def validate_train_config(train: TrainConfig, lora: LoraConfig) -> None:
    """Every value checked before any stage runs; an explicit resume dir must be a valid checkpoint."""
    t = train
    require(t.learning_rate > 0, "train.learning_rate", t.learning_rate, "> 0")
    for key, value in (("batch_size", t.batch_size), ("grad_accum", t.grad_accum), ("save_steps", t.save_steps),
                       ("save_total_limit", t.save_total_limit), ("log_steps", t.log_steps),
                       ("shuffle_buffer", t.shuffle_buffer)):
        require(value >= 1, f"train.{key}", value, ">= 1")
    require(t.max_length >= 8, "train.max_length", t.max_length, ">= 8 (tokens of prompt + answer)")
    require(t.length_tolerance >= 0, "train.length_tolerance", t.length_tolerance, ">= 0")
    require(t.eval_steps >= 0, "train.eval_steps", t.eval_steps, ">= 0 (0: no validation loss)")
    require(0 <= t.warmup_ratio < 1, "train.warmup_ratio", t.warmup_ratio, "in [0, 1)")
    require(t.max_steps > 0 or t.epochs > 0, "train.epochs", t.epochs, "> 0 (or set train.max_steps > 0)")
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
def training_arguments(t: TrainConfig, out: Path, steps: int, precision: str, device: str, evaluate: bool) -> Any:
    """TRL's SFTConfig for these settings. ``padding_free`` and ``packing`` are set to False
    explicitly: unsloth turns padding-free batching on when ``padding_free`` is left unset, and
    LeanSFTTrainer's loss needs padded batches (checked again on the built trainer)."""
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(out / "checkpoints"), per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum, learning_rate=t.learning_rate,
        lr_scheduler_type=str(t.lr_scheduler), warmup_steps=math.ceil(t.warmup_ratio * steps), num_train_epochs=1,
        max_steps=steps, logging_steps=t.log_steps, logging_first_step=True, save_strategy="steps",
        save_steps=t.save_steps, save_total_limit=t.save_total_limit, bf16=precision == "bf16",
        fp16=precision == "fp16", use_cpu=device == "cpu", gradient_checkpointing=t.gradient_checkpointing,
        seed=t.seed, data_seed=t.seed, report_to="none", max_length=t.max_length, completion_only_loss=True,
        padding_free=False, packing=False,
        dataloader_num_workers=0, disable_tqdm=False, save_only_model=False, per_device_eval_batch_size=t.batch_size,
        eval_strategy="steps" if evaluate else "no", eval_steps=t.eval_steps or None)


def setup(model_cfg: ModelConfig, lora: LoraConfig, t: TrainConfig, data_dir: Path, out: Path, cache_dir: str,
          on_log: LogFn | None = None) -> TrainingSetup:
    from spelling_exp.model.loading import resolve_device
    from spelling_exp.training.model import choose_backend, load_trainable_model, resolve_precision

    resume = resolve_resume(t.resume, out / "checkpoints")
    backend = choose_backend(t.backend, lora)
    device = resolve_device(model_cfg.device)
    precision = resolve_precision(t.precision, device)
    # the model first: with the unsloth backend, loading it imports unsloth before trl and transformers
    model, tok = load_trainable_model(model_cfg, lora, backend, cache_dir, t.max_length, t.seed,
                                      t.gradient_checkpointing)
    from spelling_exp.training.dataset import build_train_dataset, build_val_dataset
    from spelling_exp.training.trainer import (
        check_padded_batches,
        log_callback,
        make_trainer_class,
        preemption_callback,
    )

    dataset, batching = build_train_dataset(data_dir / "examples_train.jsonl", tok, model_cfg, t)
    val_dataset = (build_val_dataset(data_dir / "examples_val.jsonl", tok, model_cfg, t.max_length)
                   if t.eval_steps > 0 else None)
    steps = math.ceil(batching["batches"] / t.grad_accum)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("training %s with %s on %s (%s): %d steps, batch %d x accum %d, %d trainable params, padding %.1f%%",
             model_cfg.name, backend, device, precision, steps, t.batch_size, t.grad_accum, trainable,
             100 * batching["padding_fraction"])

    args = training_arguments(t, out, steps, precision, device, val_dataset is not None)
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
    from spelling_exp.training.trainer import preemption_signals

    if s.resume is not None:
        log.info("resuming from %s (step %d)", s.resume, s.resumed_step)

    def on_signal(signum: int) -> None:
        log.warning("received signal %d: checkpointing after this step, then stopping", signum)

    with preemption_signals(s.preemption, on_signal) as previous_handlers:
        s.trainer.train(resume_from_checkpoint=str(s.resume) if s.resume else None)
    signum = s.preemption.signal_received
    if signum is not None:
        raise interrupted(signum, s.trainer.state.global_step, previous_handlers.get(signum), out)


def interrupted(signum: int, step: int, previous: Any, out: Path) -> TrainingInterrupted:
    """After the checkpoint is saved: hand the signal on, and the error that reports it."""
    if callable(previous) and previous is not raise_interrupted:
        # e.g. submitit's handler on Slurm: now that the checkpoint is saved, let it requeue the job;
        # the requeued job reruns the same config in the same dir and resumes from the checkpoint.
        log.warning("checkpoint saved at step %d; handing the signal to the launcher", step)
        previous(signum, None)
    return TrainingInterrupted(f"training interrupted by signal {signum} at step {step}; checkpoint saved in "
                               f"{out / 'checkpoints'}; rerun the same command to resume")


# ---------------------------------------------------------------------------------- cleanup
def save_adapter(s: TrainingSetup, out: Path, seconds: float) -> dict[str, Any]:
    """Adapter + training_log.json + train_info.json into ``<out>/adapter``, all or nothing."""
    tmp = out / f".adapter.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    s.model.save_pretrained(str(tmp))
    history = s.trainer.state.log_history
    atomic_write_json(tmp / "training_log.json", history)
    steps = s.trainer.state.global_step
    info = {"backend": s.backend, "device": s.device, "precision": s.precision, "steps": steps,
            "resumed_from": str(s.resume) if s.resume else None,
            "steps_run_this_session": steps - s.resumed_step,
            "train_seconds": seconds, "trainable_params": s.trainable_params, "batching": s.batching,
            "final_loss": next((h["loss"] for h in reversed(history) if "loss" in h), None)}
    atomic_write_json(tmp / "train_info.json", info)
    if (out / "adapter").exists():
        shutil.rmtree(out / "adapter")
    os.replace(tmp, out / "adapter")
    return info


def train_adapter(model_cfg: ModelConfig, lora: LoraConfig, t: TrainConfig, data_dir: Path, out: Path,
                  cache_dir: str, on_log: LogFn | None = None) -> dict[str, Any]:
    """setup -> run -> save_adapter, without the cache; in a fresh process for unsloth (module docstring)."""
    from spelling_exp.training.model import choose_backend

    backend = choose_backend(t.backend, lora)
    if needs_fresh_process(backend):
        return train_adapter_in_fresh_process(model_cfg, lora, t, data_dir, out, cache_dir, on_log, backend)
    s = setup(model_cfg, lora, t, data_dir, out, cache_dir, on_log)
    t0 = time.perf_counter()
    run(s, out)
    return save_adapter(s, out, time.perf_counter() - t0)


# ---------------------------------------------------------------------------- fresh process
def needs_fresh_process(backend: str, modules: Any = None) -> bool:
    """Unsloth trains in a fresh process unless this process imported unsloth before transformers,
    trl and peft (it is that process, or a script that imported unsloth first on purpose)."""
    if backend != "unsloth":
        return False
    from spelling_exp.training.model import imported_before_unsloth

    modules = sys.modules if modules is None else modules
    return "unsloth" not in modules or bool(imported_before_unsloth(modules))


# The child imports only this module (no transformers) before fresh_process_main imports unsloth.
CHILD_CODE = "import sys; from spelling_exp.training.recipe import fresh_process_main; sys.exit(fresh_process_main())"


def train_adapter_in_fresh_process(model_cfg: ModelConfig, lora: LoraConfig, t: TrainConfig, data_dir: Path,
                                   out: Path, cache_dir: str, on_log: LogFn | None, backend: str) -> dict[str, Any]:
    """``train_adapter`` in a child Python process: same result, errors and signals as in-process."""
    from spelling_exp.training.model import PATCHED_BY_UNSLOTH
    from spelling_exp.training.trainer import PREEMPTION_SIGNALS

    out.mkdir(parents=True, exist_ok=True)
    request, result = out / f".child.{os.getpid()}.request.pkl", out / f".child.{os.getpid()}.result.json"
    result.unlink(missing_ok=True)
    threads = None
    if "torch" in sys.modules:
        threads = sys.modules["torch"].get_num_threads()
    log_files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    request.write_bytes(pickle.dumps({"args": (model_cfg, lora, t, data_dir, out, cache_dir), "backend": backend,
                                      "result": result, "threads": threads, "log_files": log_files}))
    log.info("train.backend=%s: training in a fresh process (unsloth must be imported before %s)", backend,
             ", ".join(PATCHED_BY_UNSLOTH))
    received: list[int] = []
    child: list[subprocess.Popen] = []

    def forward(signum, frame):  # a signal before the child exists is sent once it does
        received.append(signum)
        log.warning("received signal %d: the training process checkpoints after this step, then stops", signum)
        for proc in child:
            proc.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in PREEMPTION_SIGNALS}
    try:
        child.append(subprocess.Popen([sys.executable, "-c", CHILD_CODE, str(request)]))
        proc = child[0]
        for signum in received:
            proc.send_signal(signum)
        try:
            code = proc.wait()
        except BaseException:  # Ctrl-C reached the child too: let it stop, then stop it
            try:
                proc.wait(timeout=30)
            except BaseException:
                proc.kill()
                proc.wait()
            raise
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        request.unlink(missing_ok=True)
    outcome = read_json(result) if result.is_file() else {"status": "crashed"}
    result.unlink(missing_ok=True)
    status = outcome["status"]
    if status == "ok":
        if on_log:
            for record in json.loads((out / "adapter" / "training_log.json").read_text()):
                on_log(record, record.get("step", 0))
        return outcome["info"]
    if status == "interrupted":
        signum = received[0] if received else outcome["signal"]
        raise interrupted(signum, outcome["step"], previous.get(signum), out)
    if status == "user_error":
        raise ConfigError(outcome["message"])
    raise RuntimeError(f"the training process failed (exit {code}): {outcome.get('message', 'no result written')}; "
                       "its traceback is above")


def fresh_process_main(request_path: str | None = None) -> int:
    """The child's entry point: import unsloth first (for that backend), then setup -> run -> save_adapter.
    Writes its outcome as JSON for the parent; 0 done, 2 a user error, 3 interrupted, 1 a bug."""
    req = pickle.loads(Path(request_path or sys.argv[1]).read_bytes())
    if req["backend"] == "unsloth":
        from spelling_exp.training.model import import_unsloth_first, mark_dropout_warned

        import_unsloth_first()  # before anything imports transformers, trl or peft
        mark_dropout_warned()  # the parent already warned
    fmt = logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in [logging.StreamHandler()] + [logging.FileHandler(f) for f in req["log_files"]]:
        handler.setFormatter(fmt)  # the console, and the parent's job log (Hydra's <job>.log)
        root.addHandler(handler)
    if req["threads"]:
        import torch

        torch.set_num_threads(req["threads"])
    model_cfg, lora, t, data_dir, out, cache_dir = req["args"]
    s = None
    try:
        s = setup(model_cfg, lora, t, data_dir, out, cache_dir)
        t0 = time.perf_counter()
        run(s, out)
        outcome, code = {"status": "ok", "info": save_adapter(s, out, time.perf_counter() - t0)}, 0
    except TrainingInterrupted as e:
        outcome = {"status": "interrupted", "message": str(e), "signal": s and s.preemption.signal_received,
                   "step": s and s.trainer.state.global_step}
        code = e.exit_code
    except SpellingExpError as e:
        outcome, code = {"status": "user_error", "message": str(e)}, 2
    except Exception as e:
        log.exception("training failed")
        outcome, code = {"status": "error", "message": f"{type(e).__name__}: {e}"}, 1
    atomic_write_json(req["result"], outcome)
    return code


def train(model_cfg: ModelConfig, lora: LoraConfig, t: TrainConfig, data_dir: Path, data_key: str, out: Path,
          cache_dir: str, on_log: LogFn | None = None) -> TrainResult:
    """The adapter for these settings in ``<out>/adapter``: from the cache, or trained (and cached)."""
    if not t.use_cache:
        return TrainResult(out / "adapter", train_adapter(model_cfg, lora, t, data_dir, out, cache_dir, on_log),
                           False)
    payload = train_payload(model_cfg, lora, t, data_key)
    key = cache_key(payload)
    # Training runs under the cache's per-key lock: identical jobs of a sweep train once.
    hit = ArtifactCache(cache_dir, "train").compute_in_place(
        key, payload, out / "adapter", lambda: train_adapter(model_cfg, lora, t, data_dir, out, cache_dir, on_log))
    info = read_json(out / "adapter" / "train_info.json")
    if hit:
        log.info("adapter reused from cache (%s): %d steps, final loss %s", key, info["steps"], info["final_loss"])
    return TrainResult(out / "adapter", info, hit)
