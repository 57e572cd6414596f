"""Data-stage wall time for the full Qwen3 build (offline tokenizer), cold and cached, plus
CLI composition time. Each figure is the median of --reps runs of the real CLI in a fresh
process, so Python start-up and imports are included.

  cold (no cache)      : tokenizer rebuilt from qwen.tiktoken + extraction + examples + hold-out
  cold (tokenizer hot) : the same with the rebuilt tokenizer.json already cached (the usual case)
  cached               : identical data config again: served from the content-addressed cache

Targets: cold < 10 s, cached < 1 s, --help < 2 s.
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from _common import median, print_table, timed_cli, write_results

TARGETS = {"cold (tokenizer hot)": 10.0, "cached": 1.0, "--help": 2.0, "--cfg job +experiment": 2.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-data-"))
    common = ["stage=data", "model=qwen3_4b", "hydra.run.dir=" + str(base / "runs" / "${now:%H%M%S%f}")]
    env = {"HF_HUB_OFFLINE": "1"}
    times: dict[str, list[float]] = {k: [] for k in ("cold (no cache)", "cold (tokenizer hot)", "cached",
                                                     "--help", "--cfg job +experiment")}
    try:
        for i in range(args.reps):
            cache = base / f"cache{i}"
            e = {**env, "SPELLING_EXP_CACHE_DIR": str(cache)}
            times["cold (no cache)"].append(timed_cli(common, e))
            shutil.rmtree(cache / "data")
            times["cold (tokenizer hot)"].append(timed_cli(common, e))
            times["cached"].append(timed_cli(common, e))
            times["--help"].append(timed_cli(["--help"]))
            times["--cfg job +experiment"].append(timed_cli(["--cfg", "job", "+experiment=data_qwen3"]))
        manifest = next((base / "runs").glob("*/data/manifest.json"))
        counts = json.loads(manifest.read_text())["counts"]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    rows = [{"step": k, "median_s": f"{median(v):.2f}", "runs_s": " ".join(f"{x:.2f}" for x in v),
             "target_s": TARGETS.get(k, ""),
             "ok": ("yes" if median(v) < TARGETS[k] else "NO") if k in TARGETS else ""} for k, v in times.items()]
    print_table(rows, ["step", "median_s", "runs_s", "target_s", "ok"])
    print(f"\nQwen3 build: {counts['english_tokens']} english tokens, {counts['train_examples']} train + "
          f"{counts['val_examples']} val examples, {counts['holdout_validation']}+{counts['holdout_test']} hold-out")
    write_results("data_build", {"median_s": {k: median(v) for k, v in times.items()}, "runs_s": times,
                                 "targets_s": TARGETS, "counts": counts})


if __name__ == "__main__":
    main()
