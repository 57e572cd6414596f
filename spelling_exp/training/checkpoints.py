"""Training checkpoints: which ones are usable, the newest usable one, and what `train.resume` means.

A checkpoint is valid when trainer_state.json parses with a step, the adapter's safetensors
file is complete (its header parses and its tensors end exactly at the end of the file), and
the optimizer and scheduler states pass their zip CRC checks (torch.save writes zip archives,
so any truncated or flipped byte is caught without unpickling anything). A crash mid-save or a
damaged file makes a checkpoint invalid; ``resume=auto`` skips it with a warning and takes the
previous one. An explicit ``train.resume=<dir>`` is checked before any work starts, and the
step it resumes from is read from its trainer_state.json, not from its name.
"""
from __future__ import annotations

import json
import logging
import re
import struct
import zipfile
from pathlib import Path

from spelling_exp.errors import ConfigError
from spelling_exp.storage.io import safetensors_complete

log = logging.getLogger(__name__)
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def _zip_intact(path: Path) -> bool:
    with zipfile.ZipFile(path) as z:
        return z.testzip() is None


def checkpoint_is_valid(path: Path) -> bool:
    """Every file a resume reads is complete and undamaged (see the module docstring)."""
    try:
        checkpoint_step(path)
        if not safetensors_complete(path / "adapter_model.safetensors"):
            return False
        return all(_zip_intact(path / name) for name in ("optimizer.pt", "scheduler.pt")
                   if name == "optimizer.pt" or (path / name).exists())
    except (OSError, ValueError, KeyError, TypeError, struct.error, zipfile.BadZipFile):
        return False


def newest_valid_checkpoint(ckpt_dir: Path) -> Path | None:
    if not ckpt_dir.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := _CKPT.match(p.name)))
    for _step, path in reversed(found):
        if checkpoint_is_valid(path):
            return path
        log.warning("skipping corrupt checkpoint %s", path)
    return None


def checkpoint_step(path: Path) -> int:
    """The global step a valid checkpoint was saved at."""
    return int(json.loads((path / "trainer_state.json").read_text())["global_step"])


def resolve_resume(resume: str, ckpt_dir: Path) -> Path | None:
    """The checkpoint to resume from: ``auto`` (newest valid in ckpt_dir, if any), ``never``, or a dir."""
    if resume == "auto":
        return newest_valid_checkpoint(ckpt_dir)
    if resume in ("never", ""):
        return None
    path = Path(resume).expanduser()
    if not checkpoint_is_valid(path):
        raise ConfigError(f"train.resume={resume}: not a valid training checkpoint (needs trainer_state.json, "
                          "adapter_model.safetensors and optimizer.pt); use train.resume=auto or never")
    return path
