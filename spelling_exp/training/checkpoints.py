"""Training checkpoints: which ones are usable, the newest usable one, and what `train.resume` means.

A checkpoint is valid when trainer_state.json parses, the adapter's safetensors header parses
and optimizer state exists; a crash mid-save leaves an invalid one, which ``resume=auto`` skips
with a warning. An explicit ``train.resume=<dir>`` is checked before any work starts, and the
step it resumes from is read from its trainer_state.json, not from its name.
"""
from __future__ import annotations

import json
import logging
import re
import struct
from pathlib import Path

from spelling_exp.errors import ConfigError

log = logging.getLogger(__name__)
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_is_valid(path: Path) -> bool:
    """trainer_state.json parses, the adapter's safetensors header parses, optimizer state exists."""
    try:
        json.loads((path / "trainer_state.json").read_text())
        adapter = path / "adapter_model.safetensors"
        size = adapter.stat().st_size
        with open(adapter, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if 8 + n > size:  # a garbage header length: never read it
                return False
            json.loads(f.read(n))
        return (path / "optimizer.pt").is_file() and (path / "optimizer.pt").stat().st_size > 0
    except (OSError, ValueError, struct.error):
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
