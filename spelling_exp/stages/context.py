"""What every stage receives: the typed config, the run dir, the tracker."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from spelling_exp.config import Config
from spelling_exp.tracking import Tracker

if TYPE_CHECKING:
    from spelling_exp.data.build import DataArtifacts


@dataclass
class RunContext:
    cfg: Config
    run_dir: Path
    tracker: Tracker = field(default_factory=Tracker)

    def prepare_data(self) -> DataArtifacts:
        """The data artifacts every stage builds on (from the cache after the first build)."""
        from spelling_exp.data.build import prepare_data

        c = self.cfg
        return prepare_data(c.data, c.template, c.model, c.paths.cache_dir)
