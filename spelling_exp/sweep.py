"""End of a multirun: the sweep summary, failures with their logs, the cross-run comparison report.

(Before any job starts, sweep_checks.py checks every job's config.) In a multirun a failing job records its
failure and returns, so the other jobs still run; at the end the callback lists the failures with
their logs, writes the cross-run comparison report and exits non-zero if any job failed.

Imports stay light (no torch): Hydra instantiates the callback at start-up.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from spelling_exp.jobs import summarize_sweep
from spelling_exp.storage.layout import SweepLayout


class SweepSummaryCallback(Callback):
    """At the end of a multirun: summary, failures with their logs, cross-run comparison report."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        summary = summarize_sweep(sweep_dir)
        n = len(summary["jobs"])
        print(f"\n== Sweep {sweep_dir}: {summary['complete']}/{n} jobs complete ==")
        for j in summary["failed"]:
            print(f"FAILED job {Path(j['dir']).name} ({' '.join(j['swept'])}): {j['error']}\n  log: {j['log']}")
        if summary["complete"]:
            try:
                from spelling_exp.analysis.sweep_report import write_sweep_report

                out = SweepLayout(write_sweep_report(sweep_dir))
                print(f"comparison report: {out.comparison_html}")
            except Exception as e:  # the report must never hide the jobs' own results
                print(f"comparison report failed: {type(e).__name__}: {e}", file=sys.stderr)
        if summary["failed"]:
            sys.exit(1)  # not in an exception handler: cli.py::entrypoint keeps it 1 (a failed job)
