"""Read an offline W&B run file (run-*.wandb) without the network.

wandb >= 0.2x dropped its Python record reader; the file is a LevelDB-style log: a 7-byte
header (":W&B", magic 0xBEE1, version), then 32 KiB blocks of chunks, each with a 7-byte
header (crc32, little-endian length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4), whose
payloads concatenate to serialized `wandb_internal_pb2.Record` messages.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK = 32 * 1024


def records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, buf = 7, b""
    while pos + 7 <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < 7:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:
            pos += left_in_block
            continue
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        buf = payload if kind in (1, 2) else buf + payload
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec
            buf = b""


def summarize(path: Path) -> dict:
    """{'history': {key: [values]}, 'summary': {key: value}, 'exit_code', 'config', 'kinds', 'run_id', ...}."""
    out: dict = {"history": {}, "summary": {}, "exit_code": None, "config": {}, "kinds": {}, "group": None,
                 "tags": [], "name": None, "run_id": None}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        out["kinds"][kind] = out["kinds"].get(kind, 0) + 1
        if kind == "history":
            for item in r.history.item:
                key = item.key or "/".join(item.nested_key)
                out["history"].setdefault(key, []).append(json.loads(item.value_json))
        elif kind == "summary":
            for item in r.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "exit":
            out["exit_code"] = r.exit.exit_code
        if kind == "run":
            out["group"], out["tags"], out["name"] = r.run.run_group, list(r.run.tags), r.run.display_name
            out["run_id"] = r.run.run_id
        if kind in ("config", "run"):
            for item in (r.config.update if kind == "config" else r.run.config.update):
                out["config"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return out
