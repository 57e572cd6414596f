"""What every stage receives: the typed config, the run dir, the tracker."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from spelling_exp.config import Config, Spellings
from spelling_exp.tracking import Tracker

if TYPE_CHECKING:
    from spelling_exp.data.build import DataArtifacts


@dataclass
class RunContext:
    cfg: Config
    run_dir: Path
    tracker: Tracker = field(default_factory=Tracker)

    def prepare_data(self, spellings: Spellings | None = None) -> DataArtifacts:
        """The data artifacts every stage builds on (from the cache after the first build).

        ``spellings=shuffled``: the placebo control's training data, identical to the configured
        data in everything else (words, hold-out, templates, counts, seed).
        """
        from spelling_exp.data.build import prepare_data

        c = self.cfg
        data = c.data if spellings is None else replace(c.data, examples=replace(c.data.examples, spellings=spellings))
        return prepare_data(data, c.template, c.model, c.paths.cache_dir)
