"""Data stage: build (or reuse) the data artifacts and publish them into <run_dir>/data."""
from __future__ import annotations

import logging
import time

from spelling_exp.data.build import DataArtifacts
from spelling_exp.stages.context import RunContext
from spelling_exp.storage.cache import publish

log = logging.getLogger(__name__)


def run_data_stage(ctx: RunContext) -> DataArtifacts:
    t0 = time.perf_counter()
    art = ctx.prepare_data()
    publish(art.dir, ctx.run_dir / "data")
    c = art.manifest["counts"]
    log.info("data %s in %.2fs: %d english tokens, %d/%d train/val examples, %d/%d hold-out words -> %s",
             "reused from cache" if art.cache_hit else "built", time.perf_counter() - t0, c["english_tokens"],
             c["train_examples"], c["val_examples"], c["holdout_validation"], c["holdout_test"],
             ctx.run_dir / "data")
    ctx.tracker.summary({f"data/{k}": v for k, v in c.items()})
    return DataArtifacts(ctx.run_dir / "data", art.cache_hit, art.manifest, art.key)
