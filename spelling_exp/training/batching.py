"""Length-bucketed batching that streams examples from JSONL.

Memory stays bounded: a shuffle buffer of ``shuffle_buffer`` rows, plus at most one
partly filled bucket per length window, plus the batches waiting to be emitted. An example
of ``n`` tokens falls in window ``n // (tolerance + 1)``, so within a batch token lengths
differ by at most ``tolerance`` and padding stays small. Leftover partial buckets are
merged in length order at the end. Everything is seeded: same file + seed + epoch gives
the same batches.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spelling_exp.data.examples import seeded_rng
from spelling_exp.storage.io import iter_jsonl


@dataclass
class BatchStats:
    examples: int = 0
    batches: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    per_category: Counter = field(default_factory=Counter)
    per_style: Counter = field(default_factory=Counter)
    per_separator: Counter = field(default_factory=Counter)

    def add(self, batch: list[dict[str, Any]]) -> None:
        lengths = [row["n_tokens"] for row in batch]
        self.examples += len(batch)
        self.batches += 1
        self.tokens += sum(lengths)
        self.padded_tokens += max(lengths) * len(batch)
        for row in batch:
            self.per_category[row["category"]] += 1
            self.per_style[row["style"]] += 1
            self.per_separator[row["separator"]] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "examples": self.examples,
            "batches": self.batches,
            "mean_length": round(self.tokens / self.examples, 3) if self.examples else 0.0,
            "padding_fraction": round(1 - self.tokens / self.padded_tokens, 5) if self.padded_tokens else 0.0,
            "per_category": dict(sorted(self.per_category.items())),
            "per_style": dict(sorted(self.per_style.items())),
            "per_separator": dict(sorted(self.per_separator.items())),
        }


class LengthBucketedBatches:
    """Iterable of batches (lists of example dicts) from a JSONL file with ``n_tokens``."""

    def __init__(self, path: str | Path, batch_size: int, length_tolerance: int = 2, seed: int = 0,
                 shuffle_buffer: int = 4096, epoch: int = 0, drop_last: bool = False,
                 pending_batches: int = 64):
        if batch_size < 1 or length_tolerance < 0 or shuffle_buffer < 1:
            raise ValueError("batch_size >= 1, length_tolerance >= 0 and shuffle_buffer >= 1 are required")
        self.path = Path(path)
        self.batch_size = batch_size
        self.window = length_tolerance + 1
        self.seed = seed
        self.shuffle_buffer = shuffle_buffer
        self.epoch = epoch
        self.drop_last = drop_last
        self.pending_batches = pending_batches

    def _shuffled_rows(self, rng) -> Iterator[dict[str, Any]]:
        buf: list[dict[str, Any]] = []
        for row in iter_jsonl(self.path):
            if len(buf) < self.shuffle_buffer:
                buf.append(row)
                continue
            i = rng.randrange(len(buf))
            yield buf[i]
            buf[i] = row
        rng.shuffle(buf)
        yield from buf

    def __iter__(self) -> Iterator[list[dict[str, Any]]]:
        rng = seeded_rng(self.seed, f"batches:epoch{self.epoch}")
        buckets: dict[int, list[dict[str, Any]]] = {}
        pending: list[list[dict[str, Any]]] = []
        for row in self._shuffled_rows(rng):
            bucket = buckets.setdefault(row["n_tokens"] // self.window, [])
            bucket.append(row)
            if len(bucket) == self.batch_size:
                pending.append(bucket)
                buckets[row["n_tokens"] // self.window] = []
                if len(pending) >= self.pending_batches:
                    rng.shuffle(pending)  # don't emit batches in length order
                    yield from pending
                    pending = []
        leftovers = sorted((r for key in sorted(buckets) for r in buckets[key]), key=lambda r: r["n_tokens"])
        for i in range(0, len(leftovers), self.batch_size):
            tail = leftovers[i:i + self.batch_size]
            if len(tail) == self.batch_size or not self.drop_last:
                pending.append(tail)
        rng.shuffle(pending)
        yield from pending

    def stats(self) -> dict[str, Any]:
        s = BatchStats()
        for batch in self:
            s.add(batch)
        return s.as_dict()


def to_hf_dataset(batches: LengthBucketedBatches) -> Any:
    """A `datasets.Dataset` holding the examples in batch order, with a ``batch_index`` column.

    Feed it to a trainer with a sequential sampler and the same batch size to reproduce these
    batches exactly.
    """
    from datasets import Dataset

    def gen():
        for b, batch in enumerate(batches):
            for row in batch:
                yield {**row, "batch_index": b}

    return Dataset.from_generator(gen)
