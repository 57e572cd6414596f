"""``python -m spelling_exp.status <sweep dir>``: one row per job of a sweep (swept overrides,
state, wall time, headline metric, log), read from the job files alone: no model, no Hydra job,
nothing written, well under 2 s.

``python -m spelling_exp stage=status sweep_dir=<sweep dir>`` is the same command (cli.py hands
it over after composing the config, so a bad override there is still refused).
Exit codes: 0 the table; 2 bad input (one line).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from spelling_exp.config import Config, Stage, selected_stages
from spelling_exp.errors import ConfigError
from spelling_exp.jobs import format_status, sweep_status
from spelling_exp.storage.layout import SweepLayout


def check_sweep_dir(sweep_dir: str | Path) -> Path:
    """The sweep dir to read, or one line saying why it is not one."""
    sweep = Path(sweep_dir)
    if not sweep.is_dir():
        raise ConfigError(f"sweep_dir={sweep}: no such directory; set it to a sweep dir (multirun/<experiment>/<id>)")
    if not SweepLayout(sweep).is_sweep():
        raise ConfigError(f"sweep_dir={sweep}: not a sweep dir (no multirun.yaml, no job dirs with .hydra/); "
                          "point it at the dir a multirun wrote (multirun/<experiment>/<id>)")
    return sweep


def check(config: Config) -> Path:
    """``stage=status``: runs alone, on an existing sweep dir; returns that dir."""
    stages = selected_stages(config)
    if stages != [Stage.status]:
        raise ConfigError("stage=status runs alone: python -m spelling_exp.status <sweep dir>")
    if not config.sweep_dir:
        raise ConfigError("stage=status needs sweep_dir=<sweep dir> (e.g. multirun/<experiment>/<sweep_id>)")
    return check_sweep_dir(config.sweep_dir)


def table(sweep: Path) -> str:
    return format_status(sweep, sweep_status(sweep))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spelling_exp.status", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", help="the dir a multirun wrote (multirun/<experiment>/<sweep_id>)")
    args = parser.parse_args(argv)
    try:
        sweep = check_sweep_dir(args.sweep_dir)
    except ConfigError as e:
        print(f"spelling_exp: error: {e}", file=sys.stderr)
        return 2
    print(table(sweep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
