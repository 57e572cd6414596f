"""``python -m spelling_exp.plan +experiment=<preset> [overrides]``: the a-priori minimum detectable
effect of the design a command would run, and what it will cost, before anything runs
(``python -m spelling_exp stage=plan ...`` is the same command).

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
    spec = f"train.seed={sweeper_params['train.seed']}" if "train.seed" in sweeper_params else None
    for o in overrides:  # the command line's train.seed=... wins over the preset's sweeper params
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

    from spelling_exp.analysis.plan import declared_plan
    from spelling_exp.config import Stage, conf_dir, register_configs, selected_stages
    from spelling_exp.evaluation.questions import validate_eval_config
    from spelling_exp.stages import validate

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
    plan = declared_plan(config)  # exactly the plan the run's compare stage will follow
    return {"experiment": config.experiment_name, "questions_per_task": config.eval.n_questions,
            "samples": config.eval.n_samples, "seeds": len(seeds), "seed_values": seeds,
            "control_trained": Stage.train_control in stages, "plan": plan,
            "cost": cost(config, stages, len(seeds))}


# Parameters of the models the presets name (the tiny random Qwen3: from its config when built).
MODEL_PARAMS = {"qwen3_4b": 4.02e9, "smollm2_135m": 1.35e8}
# Assumed throughput for the estimate: an H100's dense bf16 peak at 40% utilisation for training
# and prefill; decoding is memory-bound: the weights read once per step for a whole batch.
GPU = {"name": "H100 80GB", "peak_flops": 989e12, "mfu": 0.40, "bandwidth": 3.35e12}
EXAMPLE_TOKENS = 67  # mean tokens per training example (prompt + answer), measured on the quickstart data
PROMPT_TOKENS = 60  # mean tokens of a rendered question prompt (system prompt + question)


def cost(config: Any, stages: list[str], seeds: int) -> dict[str, Any]:
    """What the design runs and an estimate of its GPU-hours, from FLOPs (no measurement on a GPU
    exists yet: the estimate says so). Training: LoRA forward + backward ~4 x params FLOP per token;
    evaluation: prefill 2 x params per prompt token, decoding bounded by reading the weights once per
    batch step (2 bytes per parameter in bf16)."""
    import math

    trained = [s for s in ("train", "train_control", "train_random") if s in stages]
    evals = [s for s in ("eval_base", "eval_adapter", "eval_control", "eval_random", "eval") if s in stages]
    t, e = config.train, config.eval
    steps = t.max_steps or math.ceil(t.epochs * config.data.examples.n_train / (t.batch_size * t.grad_accum))
    train_tokens = steps * t.batch_size * t.grad_accum * EXAMPLE_TOKENS
    n_tasks = len(e.tasks)
    replies = e.n_questions * n_tasks * e.n_samples
    params = MODEL_PARAMS.get(config.model.name)
    # the base evaluation is shared by every seed; the trained arms' evaluations run once per seed
    eval_runs = (1 if "eval_base" in evals else 0) + seeds * len([x for x in evals if x != "eval_base"])
    out: dict[str, Any] = {"trained_arms": trained, "evaluations": evals, "seeds": seeds,
                           "train_steps_per_arm": steps, "train_tokens_per_arm": train_tokens,
                           "training_runs": seeds * len(trained), "evaluation_runs": eval_runs,
                           "replies_per_evaluation": replies, "params": params, "gpu": GPU, "source": "FLOPs"}
    if params is None:
        return out
    rate = GPU["peak_flops"] * GPU["mfu"]
    train_s = 4 * params * train_tokens / rate
    decode_steps = math.ceil(replies / e.batch_size) * e.max_new_tokens  # every step reads the weights once
    eval_s = (2 * params * replies * PROMPT_TOKENS / rate + decode_steps * 2 * params / GPU["bandwidth"])
    out.update(train_hours_per_run=train_s / 3600, eval_hours_per_run=eval_s / 3600,
               gpu_hours=(out["training_runs"] * train_s + eval_runs * eval_s) / 3600)
    return out


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
    lines += ["", *cost_lines(d["cost"])]
    return "\n".join(lines)


def cost_lines(c: dict[str, Any]) -> list[str]:
    lines = [f"Runs: {c['seeds']} seed(s) x {len(c['trained_arms'])} trained arm(s) ({', '.join(c['trained_arms'])}) = "
             f"{c['training_runs']} trainings of {c['train_steps_per_arm']} steps (~{c['train_tokens_per_arm']:.3g} "
             f"tokens each); {c['evaluation_runs']} evaluations of {c['replies_per_evaluation']} replies "
             "(the base evaluation once, shared by every seed)."]
    if c.get("gpu_hours") is None:
        lines.append("GPU-hours: no parameter count for this model, so no estimate.")
        return lines
    g = c["gpu"]
    lines.append(f"GPU time, a floor from {c['source']} and memory bandwidth (no GPU measurement exists yet; "
                 f"framework overhead makes real runs slower): {c['params']:.3g} parameters on an {g['name']} at "
                 f"{100 * g['mfu']:.0f}% of {g['peak_flops'] / 1e12:.0f} TFLOP/s: {60 * c['train_hours_per_run']:.1f} "
                 f"min per training, {60 * c['eval_hours_per_run']:.1f} min per evaluation, "
                 f"{c['gpu_hours']:.2f} GPU-hours in all.")
    return lines


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
