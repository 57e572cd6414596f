"""Content-addressed artifact cache, safe for concurrent builders, verified before use.

An entry is a directory ``<root>/<kind>/<key>`` where key = sha256 of the canonical JSON of
everything that determines its content. Builders take a file lock per key, build into a
private temp dir, record every file's size and sha256, mark it complete, and rename it into
place, so a reader sees either nothing or a finished entry, and N simultaneous jobs build it once.

Every use verifies the entry against its recorded sizes and hashes (cheap next to what an entry
saves: ~40 ms for a 19 MB adapter); a corrupt entry is rebuilt with a warning, never used.
Entries reach run dirs as copies, never hard links, so nothing written to a run dir can reach
the cache.
"""
from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spelling_exp.storage.io import atomic_write_json, canonical_json, read_json, sha256_file, sha256_text

log = logging.getLogger(__name__)
COMPLETE = ".complete"
RECORD = "cache_key.json"  # the key, its payload, and every file's size and sha256


def cache_key(payload: Any) -> str:
    return sha256_text(canonical_json(payload))[:20]


class ArtifactCache:
    def __init__(self, root: str | os.PathLike, kind: str):
        self.dir = Path(root).expanduser() / kind

    def path(self, key: str) -> Path:
        return self.dir / key

    def complete(self, key: str) -> bool:
        return (self.path(key) / COMPLETE).is_file()

    def problems(self, key: str) -> list[str]:
        """Why the finished entry ``key`` cannot be trusted (empty: it matches its record)."""
        entry = self.path(key)
        try:
            recorded = read_json(entry / RECORD)["files"]
            found = {p.relative_to(entry).as_posix() for p in entry.rglob("*")
                     if p.is_file() and p.name not in (COMPLETE, RECORD)}
            out = [f"{name}: unexpected file" for name in sorted(found - set(recorded))]
            for name, want in sorted(recorded.items()):
                path = entry / name
                if not path.is_file():
                    out.append(f"{name}: missing")
                elif path.stat().st_size != want["size"]:
                    out.append(f"{name}: {path.stat().st_size} bytes, recorded {want['size']}")
                elif sha256_file(path) != want["sha256"]:
                    out.append(f"{name}: content differs from its recorded sha256")
            return out
        except (OSError, ValueError, KeyError, TypeError) as e:
            return [f"{RECORD}: unreadable ({type(e).__name__}: {e})"]

    def _verified(self, key: str) -> bool:
        if not self.complete(key):
            return False
        problems = self.problems(key)
        if problems:
            log.warning("cache entry %s is corrupt (%s); rebuilding it", self.path(key), "; ".join(problems[:3]))
        return not problems

    def get_or_build(self, key: str, payload: Any, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """(entry dir, hit). ``build(tmp_dir)`` writes the entry's files into tmp_dir."""
        from filelock import FileLock

        final = self.path(key)
        if self._verified(key):
            return final, True
        self.dir.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir / f"{key}.lock")):
            if self._verified(key):  # someone else built (or rebuilt) it while we waited
                return final, True
            tmp = self.dir / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            try:
                build(tmp)
                files = {p.relative_to(tmp).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
                         for p in sorted(tmp.rglob("*")) if p.is_file()}
                atomic_write_json(tmp / RECORD, {"key": key, "payload": payload, "files": files})
                (tmp / COMPLETE).write_text("ok\n")
                if final.exists():  # a corrupt or incomplete leftover: move it aside, then delete it
                    aside = self.dir / f".corrupt-{key}-{uuid.uuid4().hex[:8]}"
                    os.rename(final, aside)
                    shutil.rmtree(aside, ignore_errors=True)
                os.rename(tmp, final)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return final, False

    def compute_in_place(self, key: str, payload: Any, out_dir: Path, compute: Callable[[], None],
                         files: Sequence[str] | None = None, optional: Sequence[str] = ()) -> bool:
        """Stage results that are computed inside the run dir (resumable there), then cached.

        Under the key's lock, unless a finished entry exists: ``compute()`` writes into
        ``out_dir``; ``files`` (default: every file in it) become the entry, and ``optional`` ones
        when compute() wrote them. On a hit the entry is published into ``out_dir`` instead.
        Returns whether it was a hit.
        """
        def build(tmp: Path) -> None:
            compute()
            paths = ([out_dir / f for f in files] + [out_dir / f for f in optional if (out_dir / f).is_file()]
                     if files else [p for p in out_dir.iterdir() if p.is_file()])
            for path in paths:
                shutil.copy2(path, tmp / path.name)

        entry, hit = self.get_or_build(key, payload, build)
        if hit:
            publish(entry, out_dir)
        return hit


def publish(src_dir: Path, dst_dir: Path) -> None:
    """Expose a cache entry's files in a run dir, as copies (never hard links: a run may append to
    or edit its files, and that must not reach the cache).

    Each file lands under a temp name and is renamed, so the run dir never holds a partial file.
    """
    dst_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted(src_dir.iterdir()):
        if not src.is_file() or src.name == COMPLETE:
            continue
        tmp = dst_dir / f".{src.name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst_dir / src.name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
