"""The study: a sweep whose jobs differ only in the training seed, read as one design.

Every job trained the spelling adapter (and the placebo control, when the design has one) with its
own seed and evaluated it on the same test questions; the base model is one evaluation (the jobs
share it through the evaluation cache). Each contrast (spelling - placebo, spelling - base,
placebo - base) is estimated over seeds and questions together (analysis/pooled.py: crossed random
effects, clustered by word, Satterthwaite t), per task and over all questions. The declared plan
(analysis/plan.py, from the jobs' config) names the primary contrast and tasks: Holm over those
tasks, family-adjusted intervals, TOST at the smallest effect of interest. No seed is selected:
every seed enters, and every seed's own effect is plotted beside the pooled one.

Written to ``<sweep>/study/``: study.json, study.md (a section of the sweep page) and study.png.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from spelling_exp import tasks as task_registry
from spelling_exp.analysis.compare import (
    ARM_CONTRASTS,
    ARM_LABELS,
    COMPARISON_FILE,
    forced_choice_scores,
    identity_differences,
    read_comparison,
)
from spelling_exp.analysis.plan import CONTRASTS, describe, resolve_plan
from spelling_exp.analysis.pooled import adjusted_interval, pooled_diff, tost
from spelling_exp.analysis.stats import holm
from spelling_exp.analysis.tables import fig_png, md_table
from spelling_exp.errors import ConfigError
from spelling_exp.storage.io import atomic_open, atomic_write_json, atomic_write_text, iter_jsonl, read_json

log = logging.getLogger(__name__)
SEED_KEYS = ("train.seed", "data.examples.seed")
# contrast: (arm A, arm B), B - A; the control contrasts as analysis/compare.py names them
ARMS = {"spelling_vs_placebo": ("control", "adapter"), "spelling_vs_base": ("base", "adapter"),
        **{name: (a, b) for name, (a, b, _) in ARM_CONTRASTS.items() if name != "spelling_vs_placebo"}}
ARM_NAMES = ARM_LABELS


def is_study(rows: list[dict[str, Any]], swept: list[str]) -> bool:
    """A sweep over the training seed alone, with at least two complete jobs."""
    return len(rows) >= 2 and bool(swept) and all(k in SEED_KEYS for k in swept)


Scores = dict[str, tuple[float, float, int, float, float | None]]


def _scores(eval_dir: Path) -> Scores:
    """Per question: (share of replies right, their within-question variance p(1-p)n/(n-1), n, share
    of replies with no parseable answer, forced-choice score 0/1 or None without one)."""
    hits: dict[str, list[tuple[bool, bool]]] = {}
    for r in iter_jsonl(eval_dir / "predictions.jsonl"):
        hits.setdefault(r["id"], []).append((bool(r["correct"]), r["parsed"] is None))
    fc = forced_choice_scores(eval_dir)
    out = {}
    for i, v in hits.items():
        n, p = len(v), sum(c for c, _ in v) / len(v)
        out[i] = (p, p * (1 - p) * n / (n - 1) if n > 1 else 0.0, n, sum(u for _, u in v) / n, fc.get(i))
    return out


def _plan(job_dir: Path, has_control: bool, has_random: bool) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from spelling_exp.config import AnalysisConfig

    cfg = OmegaConf.load(job_dir / ".hydra" / "config.yaml")
    section = OmegaConf.select(cfg, "analysis") or {}
    a = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AnalysisConfig), section))
    return resolve_plan(a, has_control, has_random)


def collect_arms(sweep_dir: Path, jobs: list[str]) -> dict[str, Any]:
    """The design's evaluations: one base, one spelling (and control) evaluation per seed, checked to
    share their questions and their identity (anything but the adapter)."""
    comparisons = [read_comparison(sweep_dir / j / "compare" / COMPARISON_FILE) for j in jobs]
    has_control = all("control_dir" in c for c in comparisons)
    has_random = all("random_dir" in c for c in comparisons)
    first = Path(comparisons[0]["base_dir"])
    questions = {q["id"]: q for q in iter_jsonl(first / "questions.jsonl")}
    ident = read_json(first / "metrics.json")["meta"]["identity"]
    arms: dict[str, list[Scores]] = {"base": [_scores(first)], "adapter": [],
                                                                  "control": [], "random": []}
    for j, c in zip(jobs, comparisons):
        for side, key in (("adapter", "adapter_dir"), ("control", "control_dir"), ("random", "random_dir"),
                          ("base", "base_dir")):
            if key not in c:
                continue
            d = Path(c[key])
            if {q["id"]: q for q in iter_jsonl(d / "questions.jsonl")} != questions:
                raise ConfigError(f"study: job {j} asked other questions than job {jobs[0]} ({d}); every seed must be "
                                  "evaluated on the same questions (keep data.seed and eval.* fixed across seeds)")
            diffs = identity_differences(ident, read_json(d / "metrics.json")["meta"]["identity"])
            if diffs:
                raise ConfigError(f"study: job {j}'s {side} evaluation differs from job {jobs[0]}'s base in more than "
                                  f"the adapter ({'; '.join(diffs)})")
            if side != "base":
                arms[side].append(_scores(d))
    return {"questions": questions, "arms": arms, "has_control": has_control, "has_random": has_random,
            "plan": _plan(sweep_dir / jobs[0], has_control, has_random)}


def analyse(sweep_dir: Path, jobs: list[str]) -> dict[str, Any]:
    import numpy as np

    design = collect_arms(sweep_dir, jobs)
    questions, arms, plan = design["questions"], design["arms"], design["plan"]
    task_names = task_registry.ordered(q["task"] for q in questions.values())
    ran = {"base", "adapter"} | ({"control"} if design["has_control"] else set()) | (
        {"random"} if design["has_random"] else set())
    contrasts = [c for c in ARMS if set(ARMS[c]) <= ran]
    out: dict[str, Any] = {"jobs": jobs, "n_seeds": len(arms["adapter"]), "plan": plan, "contrasts": {},
                           "order": task_names, "primary": plan["primary_tasks"]}
    n_samples = max(v[2] for s in arms["adapter"] for v in s.values())
    for contrast in contrasts:
        side_a, side_b = ARMS[contrast]
        per_scope = {}
        for scope in [*task_names, "overall"]:
            ids = sorted(i for i, q in questions.items() if scope == "overall" or q["task"] == scope)
            mat = {s: np.array([[e[i][0] for i in ids] for e in arms[s]]) for s in (side_a, side_b)}
            within = {s: np.array([[e[i][1] for i in ids] for e in arms[s]]) for s in (side_a, side_b)}
            r = pooled_diff(mat[side_a], mat[side_b], clusters=[questions[i]["word"] for i in ids],
                            within_a=within[side_a], within_b=within[side_b], n_samples=n_samples)
            r["a"], r["b"] = float(mat[side_a].mean()), float(mat[side_b].mean())
            r["arm_means"] = {side_a: mat[side_a].mean(axis=1).tolist(), side_b: mat[side_b].mean(axis=1).tolist()}
            r["analysis"] = "exploratory"
            fc = {s: [[e[i][4] for i in ids] for e in arms[s]] for s in (side_a, side_b)}
            if all(x is not None for s in fc.values() for row in s for x in row):  # no parser: format-blind
                f = pooled_diff(np.array(fc[side_a]), np.array(fc[side_b]),
                                clusters=[questions[i]["word"] for i in ids])
                r["forced_choice"] = {"a": float(np.mean(fc[side_a])), "b": float(np.mean(fc[side_b])),
                                      "diff": f["diff"], "ci": f["ci"], "p": f["p"]}
            per_scope[scope] = r
        out["contrasts"][contrast] = per_scope
    primary = out["contrasts"][plan["primary_contrast"]]
    tasks = [t for t in plan["primary_tasks"] if t in primary]
    for t, p in zip(tasks, holm([primary[t]["p"] for t in tasks])):
        r = primary[t]
        r["analysis"], r["p_holm"] = "primary", p
        r["ci_family"] = adjusted_interval(r["diff"], r["se"], r["df"], plan["alpha"], len(tasks))
        r["tost_p"] = min(1.0, len(tasks) * tost(r["diff"], r["se"], r["df"], plan["sesoi"]))
        r["verdict"] = _verdict(t, r, plan)
        ids = sorted(i for i, q in questions.items() if q["task"] == t)
        r["format"] = _answer_format(ids, *(arms[side] for side in ARMS[plan["primary_contrast"]]),
                                     [questions[i]["word"] for i in ids])
    return out


def _answer_format(ids: list[str], a: list[Scores], b: list[Scores], words: list[str]) -> dict[str, Any]:
    """Exploratory, over seeds and questions: the no-answer rate's difference (B - A), and bounds on
    the strict difference whatever the unanswered replies meant (worst: B's wrong and A's right)."""
    import numpy as np

    def mat(arm: list[Scores], f) -> Any:
        return np.array([[f(e[i]) for i in ids] for e in arm])

    right = lambda v: v[0]  # noqa: E731
    right_or_unanswered = lambda v: v[0] + v[3]  # noqa: E731
    out = {}
    for name, fa, fb in (("no_answer", lambda v: v[3], lambda v: v[3]), ("worst", right_or_unanswered, right),
                         ("best", right, right_or_unanswered)):
        r = pooled_diff(mat(a, fa), mat(b, fb), clusters=words)
        out[name] = {"diff": r["diff"], "ci": r["ci"], "p": r["p"]}
    out["no_answer"].update(a=float(mat(a, lambda v: v[3]).mean()), b=float(mat(b, lambda v: v[3]).mean()))
    return out


def _verdict(task: str, r: dict[str, Any], plan: dict[str, Any]) -> str:
    lo, hi = r["ci_family"]
    pts = f"{100 * r['diff']:+.1f} points (family-adjusted 95% CI {100 * lo:+.1f} to {100 * hi:+.1f}, Holm p="
    pts += f"{r['p_holm']:.3g}, TOST p={r['tost_p']:.3g}, {r['n_seeds'][1]} seeds x {r['n_questions']} questions)"
    if r["p_holm"] < plan["alpha"]:
        return f"{task}: the method {'helps' if r['diff'] > 0 else 'hurts'}: {pts}."
    if r["tost_p"] < plan["alpha"]:
        return f"{task}: no effect beyond +/-{100 * plan['sesoi']:g} points (equivalent): {pts}."
    return f"{task}: inconclusive (neither a difference nor equivalence within +/-{100 * plan['sesoi']:g}): {pts}."


def _fc_cell(f: dict[str, Any] | None) -> str:
    if not f:
        return "n/a"
    return (f"{100 * f['a']:.1f}% → {100 * f['b']:.1f}%, {_pp(f['diff'])} [{_pp(f['ci'][0])}, {_pp(f['ci'][1])}] "
            f"(p {f['p']:.3g})")


def _pp(x: float) -> str:
    return f"{100 * x:+.1f}"


def study_section(s: dict[str, Any], image: str | None) -> list[str]:
    """The study's Markdown section: verdicts, every contrast with intervals, the variance split."""
    plan = s["plan"]
    md = ["", "## The study: the training method over seeds (primary)", "",
          f"- {describe(plan)}", f"- {s['n_seeds']} training seeds per trained arm (jobs {', '.join(s['jobs'])}); "
          "every seed is evaluated on the same test questions and none is selected. Each contrast is estimated over "
          "seeds and questions together (crossed random effects, word-clustered, Satterthwaite t).", ""]
    md += [f"- **{r['verdict']}**" for t, r in s["contrasts"][plan["primary_contrast"]].items() if "verdict" in r]
    head = ["contrast", "task", "analysis", "arm A", "arm B", "B − A, points [95% CI]", "p (Holm p)", "df",
            "variance: seeds / questions / replies", "forced choice: A → B, B − A [95% CI]"]
    body = []
    for contrast, scopes in s["contrasts"].items():
        a, b = ARMS[contrast]
        for scope, r in scopes.items():
            v = r["variance"]
            total = v["total"] or 1.0
            split = " / ".join("n/a" if v[k] != v[k] else f"{100 * v[k] / total:.0f}%"
                               for k in ("seeds", "questions", "replies"))
            iv = r.get("ci_family") or r["ci"]
            holm_p = f" ({r['p_holm']:.3g})" if "p_holm" in r else ""
            body.append([contrast.replace("_", " "), scope, r["analysis"], f"{ARM_NAMES[a]} {100 * r['a']:.1f}%",
                         f"{ARM_NAMES[b]} {100 * r['b']:.1f}%",
                         f"{_pp(r['diff'])} [{_pp(iv[0])}, {_pp(iv[1])}]{'†' if 'ci_family' in r else ''}",
                         f"{r['p']:.3g}{holm_p}", f"{r['df']:.1f}", split, _fc_cell(r.get("forced_choice"))])
    md += ["", *md_table(head, body), "",
           "† family-adjusted (Bonferroni over the primary tasks). Variance: the shares of Var(B − A) from the "
           "training seeds, the questions (words) and the reply samples (n/a with one reply per question). Forced "
           "choice (exploratory): the most probable candidate answer, scored without a parser, pooled the same way."]
    fmt = [(t, r["format"]) for t, r in s["contrasts"][plan["primary_contrast"]].items() if "format" in r]
    if fmt:
        a, b = ARMS[plan["primary_contrast"]]
        md += ["", f"Answer format ({ARM_NAMES[b]} − {ARM_NAMES[a]}, exploratory): strict accuracy is the only "
               "accuracy; the bounds say how far replies the parser could not read could move it.", "",
               *md_table(["task", "no answer, A → B", "no-answer diff [95% CI], p",
                          "strict diff if unanswered were: worst [95% CI]", "best [95% CI]"],
                         [[t, f"{100 * f['no_answer']['a']:.1f}% → {100 * f['no_answer']['b']:.1f}%",
                           f"{_pp(f['no_answer']['diff'])} [{_pp(f['no_answer']['ci'][0])}, "
                           f"{_pp(f['no_answer']['ci'][1])}], {f['no_answer']['p']:.3g}",
                           f"{_pp(f['worst']['diff'])} [{_pp(f['worst']['ci'][0])}, {_pp(f['worst']['ci'][1])}]",
                           f"{_pp(f['best']['diff'])} [{_pp(f['best']['ci'][0])}, {_pp(f['best']['ci'][1])}]"]
                          for t, f in fmt])]
    if image:
        md += ["", f"![Every seed's effect beside the pooled one]({image})"]
    return md


def plot_study(s: dict[str, Any], dpi: int = 110) -> bytes:
    """One panel per (contrast, task): each seed's effect with its question interval, and the pooled
    effect with its interval over seeds and questions."""
    from spelling_exp.analysis.report import pyplot

    plt = pyplot()
    contrasts = list(s["contrasts"])
    tasks = s["order"]
    fig, axes = plt.subplots(len(contrasts), len(tasks), figsize=(4.2 * len(tasks), 2.6 * len(contrasts)),
                             squeeze=False)
    for i, contrast in enumerate(contrasts):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            r = s["contrasts"][contrast][task]
            seeds = r["per_seed"]
            ys = list(range(len(seeds)))
            ax.errorbar([100 * e["diff"] for e in seeds], ys,
                        xerr=[[100 * (e["diff"] - e["ci"][0]) for e in seeds],
                              [100 * (e["ci"][1] - e["diff"]) for e in seeds]],
                        fmt="o", color="#4c72b0", capsize=3, label="one seed (question CI)")
            iv = r.get("ci_family") or r["ci"]
            ax.errorbar([100 * r["diff"]], [len(seeds) + 0.5], xerr=[[100 * (r["diff"] - iv[0])],
                                                                      [100 * (iv[1] - r["diff"])]],
                        fmt="D", color="#c44e52", capsize=4, markersize=7, label="pooled (seeds + questions)")
            ax.axvline(0, color="#888", lw=0.8)
            sesoi = 100 * s["plan"]["sesoi"]
            ax.axvspan(-sesoi, sesoi, color="#999", alpha=0.12, lw=0, label=f"±{sesoi:g} points (equivalence)")
            ax.set_yticks([*ys, len(seeds) + 0.5], [f"seed {k}" for k in ys] + ["pooled"])
            ax.set_title(f"{task}: {contrast.replace('_', ' ')}" + (" (primary)" if r["analysis"] == "primary" else ""),
                         fontsize=9)
            ax.set_xlabel("difference, points")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)  # below: never over a point
    fig.suptitle("Every training seed's effect beside the pooled effect", fontsize=11)
    height = 2.6 * len(contrasts)
    fig.tight_layout(rect=(0, 0.35 / height, 1, 1 - 0.3 / height))  # room for the legend below, the title above
    return fig_png(fig, dpi)


def write_study(sweep_dir: Path, jobs: list[str], dpi: int = 110) -> tuple[dict[str, Any], list[str]]:
    """study.json and study.png in <sweep>/study; returns the analysis and its Markdown section
    (image paths relative to the sweep dir)."""
    s = analyse(sweep_dir, jobs)
    out = Path(sweep_dir) / "study"
    out.mkdir(exist_ok=True)
    image = None
    try:
        png = plot_study(s, dpi)
        with atomic_open(out / "study.png", "wb") as f:
            f.write(png)
        image = "study/study.png"
    except Exception as e:  # the numbers stand without their plot
        log.warning("study plot left out (%s: %s)", type(e).__name__, e)
    md = study_section(s, image)
    atomic_write_json(out / "study.json", s)
    atomic_write_text(out / "study.md", "\n".join(md) + "\n")
    return s, md


__all__ = ["CONTRASTS", "analyse", "is_study", "write_study"]
