"""``python -m spelling_exp.plan +experiment=<preset> [overrides]``: the a-priori minimum detectable
effect of the design a command would run, before anything runs.

The design is read from the composed config exactly as the run would see it: questions per task
(eval.n_questions), replies per question (eval.n_samples), training seeds (the values of
``train.seed`` in hydra.sweeper.params or a ``train.seed=0,1,2`` override; one when it is not
swept), whether a placebo is trained (the train_control stage), and the analysis plan (the
``analysis`` group: primary contrast, tasks, alpha, power and what the MDE assumes). The MDE is
simulated (analysis/pooled.py::mde_design) at Holm's strictest level; the table adds what 3 and 5
points would need. Imports no torch, starts no Hydra job, writes nothing; well under 10 s.
Exit codes: 0 the table; 2 bad input (one line).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from spelling_exp.errors import ConfigError, SpellingExpError

USAGE = "usage: python -m spelling_exp.plan +experiment=<preset> [key=value ...]   (a config, as for a run)"


def _seed_values(sweeper_params: dict[str, Any], overrides: list[str]) -> list[Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    spec = None
    for key, value in sweeper_params.items():
        if key == "train.seed":
            spec = f"train.seed={value}"
    for o in overrides:
        if o.split("=", 1)[0].lstrip("+~") == "train.seed":
            spec = o
    if spec is None:
        return [None]
    override = parser.parse_overrides([spec])[0]
    if not override.is_sweep_override():
        return [override.value()]
    return list(override.sweep_string_iterator())


def design(overrides: list[str]) -> dict[str, Any]:
    """What the command would run: (design, plan), from the config alone."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf, open_dict, read_write

    from spelling_exp.analysis.plan import resolve_plan
    from spelling_exp.config import Stage, conf_dir, register_configs, selected_stages
    from spelling_exp.evaluation.questions import validate_eval_config
    from spelling_exp.stages import validate
    from spelling_exp.storage.layout import control_expected, random_expected

    register_configs()
    # sweep overrides (train.seed=0,1,2) are the design, not a value to compose with
    plain = [o for o in overrides if "," not in o.split("=", 1)[-1] and "range(" not in o]
    try:
        with initialize_config_dir(config_dir=conf_dir(), version_base="1.3", job_name="plan"):
            cfg = compose(config_name="config", overrides=plain, return_hydra_config=True)
        sweeper = cfg.hydra.sweeper.get("params")
        params = OmegaConf.to_container(sweeper, resolve=False) if sweeper else {}
        with read_write(cfg), open_dict(cfg):
            del cfg["hydra"]
        # the checks a run makes before any work (a config the run would refuse has no design)
        config = validate(cfg, Path("plan-does-not-write-a-run-dir"))
        validate_eval_config(config.eval)  # the design's sizes, whichever stages the command selects
    except HydraException as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    seeds = _seed_values(params, overrides)
    stages = selected_stages(config)
    plan = resolve_plan(config.analysis, control_expected(stages, config.compare.control),
                        random_expected(stages, config.compare.random))
    return {"experiment": config.experiment_name, "questions_per_task": config.eval.n_questions,
            "samples": config.eval.n_samples, "seeds": len(seeds), "seed_values": seeds,
            "control_trained": Stage.train_control in stages, "plan": plan}


def table(d: dict[str, Any]) -> str:
    from spelling_exp.analysis.plan import CONTRASTS, design_table

    t = design_table(d["questions_per_task"], d["seeds"], d["samples"], d["plan"], d["control_trained"])
    a = t["assumptions"]
    lines = [
        f"Design of {d['experiment']}: {d['seeds']} training seed(s) x {d['questions_per_task']} questions per task "
        f"x {d['samples']} reply(ies); primary contrast {CONTRASTS[d['plan']['primary_contrast']]}; "
        f"plan {d['plan']['hash']}.",
        f"Assumed: a question's one-reply difference sd {a['question_sd']:g} ({100 * a['noise_share']:g}% of its "
        f"variance noise that averages out over replies and seeds), seed sd {100 * a['seed_sd']:g} points "
        "(analysis.planning.*).",
        f"MDE at {100 * t['power']:g}% power, two-sided alpha {t['alpha']:g} (Holm's strictest step): "
        f"{100 * t['mde']:.1f} points.",
    ]
    if d["seeds"] == 1:
        lines.append("One seed: the interval leaves out seed variance, so the answer is about one adapter, "
                     "not the training method (sweep train.seed; spelling_lora runs 5).")
    qs = sorted({int(k.split("x")[1]) for k in t["grid"]})
    ss = sorted({int(k.split("x")[0]) for k in t["grid"]})
    lines += ["", "MDE, points (seeds x questions per task):", "",
              "| seeds | " + " | ".join(str(q) for q in qs) + " |", "|---|" + "---|" * len(qs)]
    for s in ss:
        label = f"{s} (one adapter)" if s == 1 else str(s)
        lines.append(f"| {label} | " + " | ".join(f"{100 * t['grid'][f'{s}x{q}']:.1f}" for q in qs) + " |")
    lines.append("")
    for pts, need in t["needed"].items():
        lines.append(f"To detect {pts} points: " + (f"{need['seeds']} seeds x {need['questions']} questions per task "
                                                   "(the smallest such design in the table)." if need else
                                                   "no design in the table is enough."))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__.split("\n\n")[0] + "\n\n" + USAGE)
        return 0
    try:
        d = design(args)
        print(table(d))
    except SpellingExpError as e:
        print(f"spelling_exp.plan: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
