"""Where a run dir and a sweep dir keep their files: the one place that names them.

A run dir (one job)::

    data/                  the data artifacts; data/report/ the data report
    eval/ eval_base/ eval_adapter/ eval_control/ eval_random/
                           one evaluation per arm; finished once its metrics.json is written
    train/adapter/         the spelling adapter;  train_control/adapter/ the placebo adapter;
                           train_random/adapter/ the random-letters (format-only) adapter
    compare/comparison.json (+ comparison.md)     the paired comparison
    report/                report.md, report.html, plots/
    resolved_config.yaml   job_result.json        .hydra/overrides.yaml (Hydra's)

A sweep dir: multirun.yaml, one job dir per job (Hydra marks each with .hydra/), the sweep
summary (sweep_summary.json / .md) and the cross-run comparison (comparison.json / .md / .html).

Paths only, and file-exists checks: no reading, no writing, no heavy imports, so every layer
from the CLI's up-front checks to job bookkeeping can use it.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

METRICS = "metrics.json"
COMPARISON = "comparison.json"
JOB_RESULT = "job_result.json"
ADAPTER = "adapter"
HYDRA_DIR = ".hydra"
CONTROL_STAGES = ("train_control", "eval_control")  # the placebo arm's stages
RANDOM_STAGES = ("train_random", "eval_random")  # the random-letters arm's stages


def metrics_file(eval_dir: str | Path) -> Path:
    """An evaluation's metrics.json (eval dirs may lie outside any run dir: compare.base=<dir>)."""
    return Path(eval_dir) / METRICS


def eval_finished(eval_dir: str | Path | None) -> bool:
    """True once the evaluation in ``eval_dir`` finished: the recipe writes metrics.json last."""
    return eval_dir is not None and metrics_file(eval_dir).is_file()


def arm_expected(arm_stages: tuple[str, str], stages: Iterable[str], configured: str | None = None) -> bool:
    """Whether the design has a control arm, known from the config before anything runs: the run
    trains or evaluates it (one of ``arm_stages`` among its stages), or names its evaluation
    (compare.control / compare.random). Whether it ran: RunLayout.control_eval / random_eval."""
    return bool(configured) or any(str(s) in arm_stages for s in stages)


def control_expected(stages: Iterable[str], configured: str | None = None) -> bool:
    """The placebo (control) arm: train_control / eval_control, or compare.control."""
    return arm_expected(CONTROL_STAGES, stages, configured)


def random_expected(stages: Iterable[str], configured: str | None = None) -> bool:
    """The random-letters arm: train_random / eval_random, or compare.random."""
    return arm_expected(RANDOM_STAGES, stages, configured)


@dataclass(frozen=True)
class RunLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))  # accept a str, as configs hold paths

    def stage_dir(self, stage: str) -> Path:
        """The dir a stage writes (data, eval*, train*, compare, report): named after the stage."""
        return self.root / str(stage)

    def adapter_of(self, train_stage: str) -> Path:
        """The adapter a train stage (train, train_control) leaves."""
        return self.stage_dir(train_stage) / ADAPTER

    @property
    def data(self) -> Path:
        return self.stage_dir("data")

    @property
    def data_report(self) -> Path:
        return self.data / "report"

    @property
    def eval(self) -> Path:
        return self.stage_dir("eval")

    @property
    def eval_base(self) -> Path:
        return self.stage_dir("eval_base")

    @property
    def eval_adapter(self) -> Path:
        return self.stage_dir("eval_adapter")

    @property
    def eval_control(self) -> Path:
        return self.stage_dir("eval_control")

    @property
    def train(self) -> Path:
        return self.stage_dir("train")

    @property
    def train_control(self) -> Path:
        return self.stage_dir("train_control")

    @property
    def adapter(self) -> Path:
        return self.adapter_of("train")

    @property
    def control_adapter(self) -> Path:
        return self.adapter_of("train_control")

    @property
    def eval_random(self) -> Path:
        return self.stage_dir("eval_random")

    @property
    def train_random(self) -> Path:
        return self.stage_dir("train_random")

    @property
    def random_adapter(self) -> Path:
        return self.adapter_of("train_random")

    @property
    def compare(self) -> Path:
        return self.stage_dir("compare")

    @property
    def comparison(self) -> Path:
        return self.compare / COMPARISON

    @property
    def comparison_md(self) -> Path:
        return self.compare / "comparison.md"

    @property
    def report(self) -> Path:
        return self.stage_dir("report")

    @property
    def resolved_config(self) -> Path:
        return self.root / "resolved_config.yaml"

    @property
    def job_result(self) -> Path:
        return self.root / JOB_RESULT

    @property
    def overrides(self) -> Path:
        """The job's command-line overrides, as Hydra recorded them."""
        return self.root / HYDRA_DIR / "overrides.yaml"

    def base_eval(self, configured: str | None = None) -> Path:
        """The base model's evaluation: compare.base when set, else this run's eval_base."""
        return Path(configured) if configured else self.eval_base

    def adapter_eval(self, configured: str | None = None) -> Path:
        """The adapter's evaluation: compare.adapter when set, else this run's eval_adapter."""
        return Path(configured) if configured else self.eval_adapter

    def arm_eval(self, eval_stage: str, configured: str | None = None) -> Path | None:
        """Whether a control arm ran, and where: its configured evaluation when set, else this run's
        ``eval_stage`` dir once it finished. None: that arm is not in the comparison."""
        if configured:
            return Path(configured)
        return self.stage_dir(eval_stage) if eval_finished(self.stage_dir(eval_stage)) else None

    def control_eval(self, configured: str | None = None) -> Path | None:
        """The placebo arm's evaluation: compare.control, else eval_control once it finished."""
        return self.arm_eval("eval_control", configured)

    def random_eval(self, configured: str | None = None) -> Path | None:
        """The random-letters arm's evaluation: compare.random, else eval_random once it finished."""
        return self.arm_eval("eval_random", configured)


@dataclass(frozen=True)
class SweepLayout:
    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def multirun_yaml(self) -> Path:
        return self.root / "multirun.yaml"

    @property
    def summary_json(self) -> Path:
        return self.root / "sweep_summary.json"

    @property
    def summary_md(self) -> Path:
        return self.root / "sweep_summary.md"

    @property
    def comparison(self) -> Path:
        return self.root / COMPARISON

    @property
    def comparison_md(self) -> Path:
        return self.root / "comparison.md"

    @property
    def comparison_html(self) -> Path:
        return self.root / "comparison.html"

    def job_dirs(self) -> list[Path]:
        """Job dirs (those Hydra created: they hold .hydra/), in job order (numbers, then names)."""
        dirs = [p for p in self.root.iterdir() if p.is_dir() and (p / HYDRA_DIR).is_dir()]
        return sorted(dirs, key=lambda p: (int(p.name) if p.name.isdigit() else 1 << 30, p.name))

    def jobs(self) -> list[RunLayout]:
        return [RunLayout(d) for d in self.job_dirs()]

    def is_sweep(self) -> bool:
        """A dir a multirun wrote: its multirun.yaml, or at least one job dir."""
        return self.multirun_yaml.is_file() or bool(self.job_dirs())
