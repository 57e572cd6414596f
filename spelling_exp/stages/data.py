"""Data stage: build (or reuse) the data artifacts and publish them into <run_dir>/data, with the
data report (analysis/data_report.py) in <run_dir>/data/report."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from spelling_exp.config import Config
from spelling_exp.data.build import DataArtifacts, validate_data_config
from spelling_exp.stages.context import RunContext
from spelling_exp.storage.cache import ArtifactCache, cache_key, publish
from spelling_exp.storage.layout import RunLayout

log = logging.getLogger(__name__)
# bump when the data report's content changes (its cache entries are then rebuilt)
DATA_REPORT_VERSION = 1


def check(config: Config, run_dir: Path) -> None:
    """The data and template config (every stage that builds the data runs this too)."""
    validate_data_config(config.data, config.template)


def run_data_stage(ctx: RunContext) -> DataArtifacts:
    t0 = time.perf_counter()
    art = ctx.prepare_data()
    data_dir = RunLayout(ctx.run_dir).data
    publish(art.dir, data_dir)
    c = art.manifest["counts"]
    log.info("data %s in %.2fs: %d english tokens, %d/%d train/val examples, %d/%d hold-out words -> %s",
             "reused from cache" if art.cache_hit else "built", time.perf_counter() - t0, c["english_tokens"],
             c["train_examples"], c["val_examples"], c["holdout_validation"], c["holdout_test"], data_dir)
    ctx.tracker.summary({f"data/{k}": v for k, v in c.items()})
    write_data_report_for(ctx, art.key)
    return DataArtifacts(data_dir, art.cache_hit, art.manifest, art.key)


def template_layout(template: Any) -> dict[str, Any]:
    """The template config as the data report reads it: names, library order, the mix's cells."""
    from spelling_exp.data.templates import load_templates, mix_cells

    templates = load_templates(template)
    return {"name": template.name,
            "templates": [{"id": t.id, "category": t.category, "style": t.style} for t in templates.values()],
            "separators": dict(template.separators),
            "cells": [{"category": c.category, "style": c.style, "separator": c.separator, "weight": c.weight}
                      for c in mix_cells(template, templates)]}


def write_data_report_for(ctx: RunContext, data_key: str) -> None:
    """The data report of <run_dir>/data into <run_dir>/data/report. It is a function of the data
    files, so it is cached under the data's key: a data cache hit costs a copy, not a tokenizer load
    (importing transformers alone takes seconds). A failing report logs a warning and never fails
    the stage: the data are complete without it."""
    from spelling_exp.analysis.data_report import write_data_report

    t0 = time.perf_counter()
    cfg, layout = ctx.cfg, RunLayout(ctx.run_dir)
    data_dir = layout.data

    def count_tokens(texts: list[str]) -> list[int]:
        from spelling_exp.model.tokenizer import load_tokenizer

        tok = load_tokenizer(cfg.model, cache_dir=cfg.paths.cache_dir)
        backend = getattr(tok, "backend_tokenizer", None)
        if backend is not None and hasattr(backend, "encode_batch_fast"):  # the same ids, twice as fast
            return [len(e.ids) for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
        return [len(ids) for ids in tok(texts, add_special_tokens=False)["input_ids"]]

    try:
        payload = {"data": data_key, "report": DATA_REPORT_VERSION, "dpi": cfg.report.dpi}
        entry, hit = ArtifactCache(cfg.paths.cache_dir, "data_report").get_or_build(
            cache_key(payload), payload,
            lambda tmp: write_data_report(data_dir, tmp, layout=template_layout(cfg.template),
                                          count_tokens=count_tokens, dpi=cfg.report.dpi))
        publish(entry, layout.data_report)
    except Exception as e:  # the report is a reading aid; the data stage's result stands without it
        log.warning("data report not written (%s: %s); the data files are complete", type(e).__name__, e)
        return
    log.info("data report %s in %.2fs -> %s", "reused from cache" if hit else "written", time.perf_counter() - t0,
             layout.data_report / "data_report.html")
