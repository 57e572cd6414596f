"""The analysis plan, declared before the run: which contrast is primary, the tasks in the family,
alpha, the smallest effect of interest (the equivalence margin), and what the a-priori MDE assumes.

``resolve_plan`` turns the config into the plan a comparison follows (``primary_contrast: null``
is decided here, from the config alone: a run that trains or is given a control arm has the
format-matched control as its primary contrast). Its hash (``plan_hash``) goes into
comparison.json and the report, so a reader can tell that two runs followed the same plan and that
the plan was not changed after the results were seen (it is fixed by the config, which Hydra
stores in the run dir before any stage runs).

``design_table`` is the a-priori MDE of a design (analysis/pooled.py::mde_design) and the seeds
and questions needed for 3 and 5 points, printed by ``python -m spelling_exp.plan``.
"""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from spelling_exp import tasks as task_registry
from spelling_exp.config import AnalysisConfig
from spelling_exp.errors import ConfigError, require
from spelling_exp.storage.io import canonical_json, sha256_text

CONTRASTS = {
    "spelling_vs_placebo": "spelling adapter - placebo adapter (the format-matched control: the letters' order)",
    "spelling_vs_base": "spelling adapter - base model (the total effect, format exposure included)",
    "spelling_vs_random": "spelling adapter - random-letters adapter (knowledge of the word's letters)",
    "placebo_vs_random": "placebo adapter - random-letters adapter (the letter inventory)",
    "random_vs_base": "random-letters adapter - base model (format exposure alone)",
}


def check_plan(a: AnalysisConfig) -> None:
    """Refuse a plan that cannot be followed, before any work."""
    if a.primary_contrast is not None and a.primary_contrast not in CONTRASTS:
        raise ConfigError(f"analysis.primary_contrast={a.primary_contrast!r}: unknown contrast "
                          f"(known: {', '.join(CONTRASTS)}, or null to decide from the stages)")
    require(len(a.primary_tasks) >= 1, "analysis.primary_tasks", a.primary_tasks, "at least one task")
    for t in a.primary_tasks:
        task_registry.get(t, "analysis.primary_tasks")
    require(len(set(a.primary_tasks)) == len(a.primary_tasks), "analysis.primary_tasks", a.primary_tasks,
            "no task twice")
    require(0 < a.alpha < 0.5, "analysis.alpha", a.alpha, "in (0, 0.5)")
    require(0 < a.power < 1, "analysis.power", a.power, "in (0, 1)")
    require(0 < a.sesoi < 1, "analysis.sesoi", a.sesoi, "in (0, 1): an absolute accuracy difference, e.g. 0.03")
    require(a.planning.question_sd > 0, "analysis.planning.question_sd", a.planning.question_sd, "> 0")
    require(0 <= a.planning.noise_share <= 1, "analysis.planning.noise_share", a.planning.noise_share, "in [0, 1]")
    require(a.planning.seed_sd >= 0, "analysis.planning.seed_sd", a.planning.seed_sd, ">= 0")


def resolve_plan(a: AnalysisConfig, has_control: bool, has_random: bool = False) -> dict[str, Any]:
    """The plan a comparison follows. ``has_control`` / ``has_random``: the run trains (or names) the
    placebo / the random-letters arm, which the config says before anything runs."""
    check_plan(a)
    contrast = a.primary_contrast or ("spelling_vs_placebo" if has_control else
                                      "spelling_vs_random" if has_random else "spelling_vs_base")
    plan = {"primary_contrast": contrast, "primary_tasks": list(a.primary_tasks), "correction": "holm",
            "alpha": a.alpha, "sesoi": a.sesoi, "power": a.power, "clustering": "word",
            "equivalence": "two one-sided t tests at +/- sesoi", "planning": asdict(a.planning)}
    plan["hash"] = plan_hash(plan)
    return plan


def declared_plan(config: Any) -> dict[str, Any]:
    """The plan a run's compare stage follows, from its config: the control arms its declared stages
    train or evaluate (config.stages, the design, also when stage=<one> runs) or compare.* names."""
    from spelling_exp.storage.layout import control_expected, random_expected

    return resolve_plan(config.analysis, control_expected(config.stages, config.compare.control),
                        random_expected(config.stages, config.compare.random))


def plan_hash(plan: dict[str, Any]) -> str:
    return sha256_text(canonical_json({k: v for k, v in plan.items() if k != "hash"}))[:12]


def describe(plan: dict[str, Any]) -> str:
    """One sentence for the report."""
    return (f"Analysis plan {plan['hash']} (declared before the run): primary contrast "
            f"{CONTRASTS[plan['primary_contrast']]}, strict accuracy on {' then '.join(plan['primary_tasks'])}, "
            f"clustered by word, Holm at alpha {plan['alpha']:g}; equivalence (TOST) at +/- "
            f"{100 * plan['sesoi']:g} points; everything else exploratory.")


def design_table(n_questions: int, n_seeds: int, n_samples: int, plan: dict[str, Any],
                 control_trained: bool = True) -> dict[str, Any]:
    """The a-priori MDE of a design at the plan's family level, and what 3 and 5 points would need."""
    from spelling_exp.analysis.pooled import mde_design

    level = plan["alpha"] / len(plan["primary_tasks"])  # Holm's strictest step
    p = plan["planning"]

    def qsd(s: int) -> float:
        # sd of a question's difference of seed- and reply-averaged scores: the noise part averages
        # out over replies and (both arms trained) seeds, the word-to-word part does not
        noise = n_samples * (s if control_trained else 1)
        return p["question_sd"] * math.sqrt(1 - p["noise_share"] + p["noise_share"] / noise)

    def mde(q: int, s: int) -> float:
        return mde_design(q, s, qsd(s), p["seed_sd"], alpha=level, power=plan["power"],
                          control_seeds=s if control_trained else 0, n_sim=4000)

    # one seed is in the grid only to show what it would claim: its interval leaves out seed
    # variance (it answers for one adapter, not the method), so it is never "what is needed"
    grid = {"seeds": [1, 3, 5, 8, 12], "questions": [100, 150, 300, 500, 1000, 2000]}
    table = {f"{s}x{q}": mde(q, s) for s in grid["seeds"] for q in grid["questions"]}
    needed = {}
    for target in (0.03, 0.05):
        fits = [(s * q, s, q) for s in grid["seeds"] if s > 1 for q in grid["questions"] if table[f"{s}x{q}"] <= target]
        needed[f"{100 * target:.0f}"] = ({"seeds": min(fits)[1], "questions": min(fits)[2]} if fits else None)
    return {"design": {"questions_per_task": n_questions, "seeds": n_seeds, "samples": n_samples},
            "alpha": level, "power": plan["power"], "assumptions": p, "mde": mde(n_questions, n_seeds),
            "grid": table, "needed": needed}
