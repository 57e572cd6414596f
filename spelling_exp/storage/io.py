"""Small I/O helpers: atomic writes, canonical JSON, JSONL, hashing.

Every artifact goes through ``atomic_write_*`` so a crash or Ctrl-C never leaves a
half-written file behind: we write to a temp file in the same directory and rename.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace variance: equal objects give equal bytes."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def words_sha256(words: Iterable[str]) -> str:
    """Order-independent hash of a word list (sorted, newline-joined)."""
    return sha256_text("\n".join(sorted(words)))


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temp file beside ``path``; rename over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, **({} if binary else {"encoding": "utf-8", "newline": "\n"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=indent) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[Any]) -> int:
    n = 0
    with atomic_open(path, "w") as f:
        for row in rows:
            f.write(canonical_json(row))
            f.write("\n")
            n += 1
    return n


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Stream rows; a truncated final line (crash mid-append) is ignored, not fatal."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break
            line = line.strip()
            if line:
                yield json.loads(line)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def safetensors_complete(path: str | os.PathLike) -> bool:
    """The header parses and the last tensor ends exactly at the end of the file: a truncated,
    padded or garbled file gives False. Raises OSError only (a missing or unreadable file)."""
    import struct

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        try:
            (n,) = struct.unpack("<Q", f.read(8))
            if 8 + n > size:  # a garbage header length: never read it
                return False
            header = json.loads(f.read(n))
            ends = [t["data_offsets"][1] for name, t in header.items() if name != "__metadata__"]
        except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError):
            return False
    return 8 + n + max(ends, default=0) == size
