"""Content-addressed artifact cache, safe for concurrent builders.

An entry is a directory ``<root>/<kind>/<key>`` where key = sha256 of the canonical JSON of
everything that determines its content. Builders take a file lock per key, build into a
private temp dir, mark it complete, and rename it into place, so a reader sees either
nothing or a finished entry, and N simultaneous jobs build it once.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spelling_exp.storage.io import atomic_write_json, canonical_json, sha256_text

log = logging.getLogger(__name__)
COMPLETE = ".complete"


def cache_key(payload: Any) -> str:
    return sha256_text(canonical_json(payload))[:20]


class ArtifactCache:
    def __init__(self, root: str | os.PathLike, kind: str):
        self.dir = Path(root).expanduser() / kind

    def path(self, key: str) -> Path:
        return self.dir / key

    def complete(self, key: str) -> bool:
        return (self.path(key) / COMPLETE).is_file()

    def get_or_build(self, key: str, payload: Any, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """(entry dir, hit). ``build(tmp_dir)`` writes the entry's files into tmp_dir."""
        from filelock import FileLock

        final = self.path(key)
        if self.complete(key):
            return final, True
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir / f"{key}.lock")):
            if self.complete(key):  # someone else built it while we waited
                return final, True
            tmp = self.dir / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                build(tmp)
                atomic_write_json(tmp / "cache_key.json", {"key": key, "payload": payload})
                (tmp / COMPLETE).write_text("ok\n")
                if final.exists():  # an incomplete leftover from a crash: replace it
                    shutil.rmtree(final)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return final, False

    def compute_in_place(self, key: str, payload: Any, out_dir: Path, compute: Callable[[], None],
                         files: Sequence[str] | None = None) -> bool:
        """Stage results that are computed inside the run dir (resumable there), then cached.

        Under the key's lock, unless a finished entry exists: ``compute()`` writes into
        ``out_dir``; ``files`` (default: every file in it) become the entry. On a hit the entry is
        published into ``out_dir`` instead. Returns whether it was a hit.
        """
        def build(tmp: Path) -> None:
            compute()
            paths = [out_dir / f for f in files] if files else [p for p in out_dir.iterdir() if p.is_file()]
            for path in paths:
                shutil.copy2(path, tmp / path.name)

        entry, hit = self.get_or_build(key, payload, build)
        if hit:
            publish(entry, out_dir)
        return hit


def publish(src_dir: Path, dst_dir: Path) -> None:
    """Expose a cache entry's files in a run dir: hard links where possible, copies otherwise.

    Each file lands under a temp name and is renamed, so the run dir never holds a partial file.
    """
    dst_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted(src_dir.iterdir()):
        if not src.is_file() or src.name in (COMPLETE,):
            continue
        tmp = dst_dir / f".{src.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copy2(src, tmp)
        os.replace(tmp, dst_dir / src.name)
