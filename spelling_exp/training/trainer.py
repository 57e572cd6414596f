"""The trainer: TRL's SFTTrainer with a lean loss, our batch order, and callbacks that log and
stop cleanly on preemption signals.

Loss. TRL 1.16 computes the loss through a "fused LM head" that, off Triton devices, projects
*every* position (prompt included) through the LM head in chunks, also computes full-vocabulary
entropy and top-1 accuracy for its logs, and recomputes the chunks in backward. On a CPU that
made a step 1.3-1.5x slower than a bare loop. ``LeanSFTTrainer.compute_loss`` instead runs the
backbone once and projects only the positions that carry a label (the answer tokens) through
the LM head: the same loss, less work than even a bare loop. TRL's data handling is kept.

Padded batches only. The loss passes the backbone ``input_ids`` and ``attention_mask`` and nothing
else, so it is only correct for padded batches: a padding-free batch (the sequences of a batch
concatenated into one row, told apart by ``position_ids``, no attention mask), which Unsloth turns
on by itself, would let every sequence attend to the ones before it. ``check_padded_batches`` runs
on every built trainer and refuses one whose arguments or collator would produce such batches, and
``compute_loss`` refuses a batch without an attention mask.

Preemption. SIGTERM / SIGUSR1 / SIGUSR2 only set a flag; the step in flight finishes, the
trainer saves a checkpoint and stops, and ``interrupted`` hands the signal to whoever held it
before (submitit on Slurm, which requeues the job) and builds the error that reports it.
"""
from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from spelling_exp.errors import TrainingInterrupted, raise_interrupted

log = logging.getLogger(__name__)
PREEMPTION_SIGNALS = tuple(getattr(signal, s) for s in ("SIGTERM", "SIGUSR1", "SIGUSR2") if hasattr(signal, s))
# Keys only a padding-free (flattened) batch carries: TRL's flash-attention metadata, unsloth's lengths.
PADDING_FREE_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "seq_idx",
                     "packed_seq_lengths")


def batch_problem(batch: Any, rows: int | None = None) -> str | None:
    """Why ``batch`` is not a padded batch that ``LeanSFTTrainer.compute_loss`` handles correctly
    (None when it is): it needs ``attention_mask`` of ``input_ids``'s shape, one row per example,
    and none of the padding-free keys."""
    keys = sorted(batch.keys())
    flattened = [k for k in PADDING_FREE_KEYS if k in batch]
    if flattened:
        return f"it carries padding-free keys {flattened} (keys: {keys})"
    if batch.get("attention_mask") is None:
        extra = " and position_ids" if "position_ids" in batch else ""
        return f"it has no attention_mask{extra} (keys: {keys})"
    shape, mask_shape = tuple(batch["input_ids"].shape), tuple(batch["attention_mask"].shape)
    if mask_shape != shape:
        return f"attention_mask {mask_shape} does not match input_ids {shape}"
    if rows is not None and shape[0] != rows:
        return f"{rows} examples became {shape[0]} rows of input_ids {shape} (flattened)"
    return None


def check_padded_batches(trainer: Any) -> None:
    """Refuse a built trainer that would feed ``compute_loss`` padding-free or packed batches: its
    arguments, its collator's flags (TRL's ``padding_free``, unsloth's wrapper), and one real batch
    collated from the first examples of its training set (no RNG is drawn)."""
    args, collator = trainer.args, trainer.data_collator
    why = None
    for flag in ("padding_free", "packing"):
        if getattr(args, flag, False):
            why = f"its arguments set {flag}={getattr(args, flag)!r}"
    if why is None and getattr(collator, "padding_free", False):
        why = f"its collator {type(collator).__name__} is padding-free"
    if why is None and getattr(collator, "_unsloth_padding_free_lengths_wrapped", False):
        why = "unsloth wrapped its collator for padding-free batches"
    if why is None and trainer.train_dataset is not None and len(trainer.train_dataset) > 0:
        n = min(2, len(trainer.train_dataset))
        problem = batch_problem(collator([trainer.train_dataset[i] for i in range(n)]), n)
        why = f"a collated batch is not padded: {problem}" if problem else None
    if why:
        raise RuntimeError(f"refusing to train: {why}. LeanSFTTrainer.compute_loss needs padded batches with an "
                           "attention mask; padding-free batches would let the examples of a batch attend to each "
                           "other (see training/trainer.py)")


def make_trainer_class():
    """LeanSFTTrainer, defined lazily so importing this module does not import torch/trl."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import SequentialSampler
    from trl import SFTTrainer

    class LeanSFTTrainer(SFTTrainer):
        """SFTTrainer with (1) a sequential sampler over our pre-bucketed order and (2) a loss that
        projects only the labelled positions through the LM head (see module docstring)."""

        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            backbone = getattr(base, base.base_model_prefix, None)
            lm_head = base.get_output_embeddings()
            if backbone is None or lm_head is None or return_outputs:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if inputs.get("attention_mask") is None or any(k in inputs for k in PADDING_FREE_KEYS):
                raise RuntimeError(f"LeanSFTTrainer.compute_loss: {batch_problem(inputs)}; padding-free batches "
                                   "would let the examples of a batch attend to each other")
            labels = inputs["labels"]
            hidden = backbone(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                              use_cache=False).last_hidden_state
            shift_labels = labels[:, 1:]
            mask = shift_labels != -100
            logits = lm_head(hidden[:, :-1][mask]).float()
            loss_sum = F.cross_entropy(logits, shift_labels[mask], reduction="sum")
            n_tokens = mask.sum() if num_items_in_batch is None else num_items_in_batch
            loss = loss_sum / torch.as_tensor(n_tokens, device=loss_sum.device).clamp(min=1)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes
            mode = "train" if model.training else "eval"
            with torch.no_grad():
                acc = (logits.argmax(-1) == shift_labels[mask]).float().mean().item() if mask.any() else 0.0
            self._metrics[mode]["mean_token_accuracy"].append(acc)  # cheap: argmax over answer tokens only
            return loss

    return LeanSFTTrainer


def log_callback(on_log: Callable[[dict[str, Any], int], None]) -> Any:
    """Hands every trainer log record (loss, lr, grad norm, eval loss) and its step to ``on_log``."""
    from transformers import TrainerCallback

    class LogCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            on_log(logs or {}, state.global_step)

    return LogCallback()


def preemption_callback() -> Any:
    from transformers import TrainerCallback

    class PreemptionCallback(TrainerCallback):
        """A signal only sets a flag; the step in flight finishes, then we checkpoint and stop."""
        signal_received: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if self.signal_received is not None:
                control.should_save = True
                control.should_training_stop = True

    return PreemptionCallback()


@contextmanager
def preemption_signals(callback: Any, on_signal: Callable[[int], None]) -> Iterator[dict[int, Any]]:
    """While training: preemption signals set ``callback.signal_received``. Yields the handlers
    that were installed before, so the recipe can hand the signal on after checkpointing."""
    def handler(signum, frame):
        callback.signal_received = signum
        on_signal(signum)

    old = {s: signal.signal(s, handler) for s in PREEMPTION_SIGNALS}
    try:
        yield old
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class Preempted(TrainingInterrupted):
    """TrainingInterrupted by ``signum`` at ``step``: a fresh training process reports both to its
    parent, which raises the same error and hands the signal on (``isolation.py``)."""

    def __init__(self, message: str, signum: int | None = None, step: int | None = None):
        super().__init__(message)  # args stay (message,): str(), the CLI's line and pickling as before
        self.signum, self.step = signum, step


def interrupted(signum: int, step: int, previous: Any, out: Path) -> TrainingInterrupted:
    """After the checkpoint is saved: hand the signal on, and the error that reports it."""
    if callable(previous) and previous is not raise_interrupted:
        # e.g. submitit's handler on Slurm: now that the checkpoint is saved, let it requeue the job;
        # the requeued job reruns the same config in the same dir and resumes from the checkpoint.
        log.warning("checkpoint saved at step %d; handing the signal to the launcher", step)
        previous(signum, None)
    return Preempted(f"training interrupted by signal {signum} at step {step}; checkpoint saved in "
                     f"{out / 'checkpoints'}; rerun the same command to resume", signum, step)
