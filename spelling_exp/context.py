"""What every stage receives: the typed config, the run dir, the tracker, earlier results."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tracking import Tracker


@dataclass
class RunContext:
    cfg: Any
    run_dir: Path
    tracker: Tracker = field(default_factory=Tracker)
    results: dict[str, Any] = field(default_factory=dict)  # stage name -> its return value
