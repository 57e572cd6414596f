"""Paired comparison of two evaluations of the same questions (e.g. base vs adapter).

The question is the unit: each question's score is the share of its replies that are right,
and both evaluations answered the same questions, so everything is paired per question.

- Difference: mean over questions of (adapter - base), with a percentile bootstrap 95% CI
  over questions (over words for the `overall` scope: a word can be in both tasks).
- Test: McNemar's exact test when every question has one reply (scores are 0/1); a paired
  sign-flip permutation test over per-question differences when questions have several replies
  or are clustered (`overall`). The test used is recorded beside its p.
- Primary analysis, declared: strict accuracy on position and on count, co-primary, with a Holm
  correction over the two. Everything else (the `overall` scope, strata and breakdowns, every
  row of a sweep) is exploratory and labelled so.
- Answer format (exploratory): strict accuracy is the only accuracy. Beside it: accuracy among
  answered questions, the paired difference on the questions both models answered, worst/best
  bounds for the unanswered replies, and a paired test of the no-answer rate. The parser's
  reading of a spelled-out word is no longer credited as accuracy anywhere.
- Minimum detectable effect: the difference this n could detect with 80% power at Holm's
  strictest level (alpha / 2 for two co-primary tasks), from the observed discordance, so a
  "no significant difference" says how large a difference it could have seen.
- Contamination: beside the whole hold-out, the same paired difference on the *clean* words
  only (no trained word inside or around them, data/contamination.py), exploratory.

Two evaluations are compared only when they share their identity (model, questions, split,
backend, sampling, max_new_tokens, n_samples, seed): anything but the adapter differing is
refused with the difference named.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from spelling_exp import tasks as task_registry
from spelling_exp.analysis.pooled import adjusted_interval, mde_sign_flip, pooled_diff, tost
from spelling_exp.analysis.stats import holm, paired_diff_ci, paired_test
from spelling_exp.errors import ConfigError
from spelling_exp.storage.io import atomic_write_json, iter_jsonl, read_json
from spelling_exp.storage.layout import CONTROL_STAGES, RANDOM_STAGES

ALPHA = 0.05
POWER = 0.8
COMPARISON_FILE = "comparison.json"
# What base and adapter evaluations may differ in: the adapter itself, how it is applied, the batch
# size (the batch plan), and for a server the model name it serves the adapter under.
IDENTITY_FREE = ("adapter", "generation.merge_adapter", "generation.batch_size", "served_model")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def identity_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """'key: a vs b' for each identity field in which two evaluations differ (adapter aside)."""
    fa, fb = _flatten(a), _flatten(b)
    return [f"{k}: {fa.get(k)!r} vs {fb.get(k)!r}" for k in sorted(set(fa) | set(fb))
            if fa.get(k) != fb.get(k) and not any(k == f or k.startswith(f + ".") for f in IDENTITY_FREE)]


def _check_comparable(base_dir: Path, adapter_dir: Path, mb: dict[str, Any], ma: dict[str, Any]) -> None:
    ia, ib = mb.get("meta", {}).get("identity"), ma.get("meta", {}).get("identity")
    for d, ident in ((base_dir, ia), (adapter_dir, ib)):
        if ident is None:
            raise ConfigError(f"{d}: metrics.json records no evaluation identity (an evaluation from an older "
                              "version); evaluate again before comparing")
    diffs = identity_differences(ia, ib)
    if diffs:
        raise ConfigError(f"{base_dir} and {adapter_dir} differ in more than the adapter ({'; '.join(diffs)}); "
                          "a paired comparison needs both evaluated the same way")


def _per_question(pred_path: Path) -> dict[str, dict[str, float | None]]:
    """Per question, over its replies: the share right (strict), the share with no parseable
    answer, the share right or unanswered (the best case for unanswered replies), and the share
    right among the answered ones (None when none was answered)."""
    replies: dict[str, list[tuple[bool, bool]]] = {}
    for r in iter_jsonl(pred_path):
        replies.setdefault(r["id"], []).append((bool(r["correct"]), r["parsed"] is not None))
    out: dict[str, dict[str, float | None]] = {}
    for i, v in replies.items():
        right, answered = sum(c for c, _ in v), sum(a for _, a in v)
        out[i] = {"correct": right / len(v), "no_answer": 1 - answered / len(v),
                  "correct_or_unanswered": (right + len(v) - answered) / len(v),
                  "correct_among_answered": right / answered if answered else None}
    return out


def forced_choice_scores(eval_dir: Path) -> dict[str, float]:
    """Per question: 1 if the most probable candidate answer is right (evaluation/forced_choice.py)."""
    path = Path(eval_dir) / "forced_choice.jsonl"
    return {r["id"]: float(r["correct"]) for r in iter_jsonl(path)} if path.is_file() else {}


def _field(per_question: dict[str, dict[str, float | None]], key: str) -> dict[str, float]:
    return {i: v[key] for i, v in per_question.items() if v[key] is not None}


def answer_format(ids: list[str], a: dict[str, dict[str, float | None]], b: dict[str, dict[str, float | None]],
                  words: dict[str, str], n_boot: int, seed: int) -> dict[str, Any]:
    """How much the strict difference depends on replies the parser could not read (exploratory):

    - ``answered_accuracy``: each model's accuracy over the questions it answered at least once
      (not paired: the two sets differ);
    - ``both_answered``: the paired difference on the questions both answered (accuracy among the
      answered replies);
    - ``bounds``: the difference if every unanswered reply were wrong for b and right for a
      (``worst``) and the reverse (``best``): whatever the unreadable replies meant, the true
      difference lies between;
    - ``no_answer``: the paired difference in the no-answer rate, with its own test."""
    def among(d: dict[str, dict[str, float | None]]) -> dict[str, Any]:
        vals = [d[i]["correct_among_answered"] for i in ids if d[i]["correct_among_answered"] is not None]
        return {"n": len(vals), "rate": sum(vals) / len(vals) if vals else None}

    both = [i for i in ids if a[i]["correct_among_answered"] is not None and b[i]["correct_among_answered"] is not None]
    out: dict[str, Any] = {"answered_accuracy": {"base": among(a), "adapter": among(b)}}
    if both:
        out["both_answered"] = _paired(both, _field(a, "correct_among_answered"), _field(b, "correct_among_answered"),
                                       words, n_boot, seed, "exploratory")
    out["bounds"] = {
        "worst": _paired(ids, _field(a, "correct_or_unanswered"), _field(b, "correct"), words, n_boot, seed,
                         "exploratory"),
        "best": _paired(ids, _field(a, "correct"), _field(b, "correct_or_unanswered"), words, n_boot, seed,
                        "exploratory")}
    out["no_answer"] = _paired(ids, _field(a, "no_answer"), _field(b, "no_answer"), words, n_boot, seed, "exploratory")
    return out


def _paired(ids: list[str], base: dict[str, float], adapter: dict[str, float], words: dict[str, str] | None,
            n_boot: int, seed: int, analysis: str) -> dict[str, Any]:
    a = [base[i] for i in ids]
    b = [adapter[i] for i in ids]
    clusters = [words[i] for i in ids] if words else None
    diff, lo, hi = paired_diff_ci(a, b, clusters=clusters, n_boot=n_boot, seed=seed)
    binary = all(x in (0.0, 1.0) for x in a + b)
    test = paired_test(a, b, binary=binary, clusters=clusters, seed=seed)
    discordance = sum(abs(y - x) for x, y in zip(a, b)) / len(ids)
    t = pooled_diff([a], [b], clusters=clusters)  # the word-clustered t: equivalence and family intervals
    return {"n": len(ids), "base": sum(a) / len(a), "adapter": sum(b) / len(b), "diff": diff, "ci95": [lo, hi],
            "test": test["test"], "p": test["p"], "se": t["se"], "df": t["df"], "n_words": t["n_words"],
            "d": [y - x for x, y in zip(a, b)], "clusters": clusters,
            "base_only_correct": sum(1 for x, y in zip(a, b) if x > y),
            "adapter_only_correct": sum(1 for x, y in zip(a, b) if y > x),
            "discordance": discordance, "analysis": analysis}


def _readings(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """Every paired reading of a scope (strict, clean, the answer-format ones), at any depth."""
    found = []
    for v in entry.values():
        if isinstance(v, dict) and "d" in v:
            found.append(v)
        elif isinstance(v, dict):
            found.extend(_readings(v))
    return found


def ordered_tasks(c: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Tasks in canonical order (JSON round-trips sort keys alphabetically)."""
    return [(t, c["tasks"][t]) for t in task_registry.ordered(c["tasks"])]


def verdict(task: str, s: dict[str, Any], names: tuple[str, str] = ("base", "adapter"), alpha: float = ALPHA) -> str:
    """One sentence per task: which of (a, b) is better and by how much, that they are equivalent within
    the smallest effect of interest, or that the run cannot tell (and what it could have seen)."""
    pts = 100 * s["diff"]
    iv = s.get("ci_family") or s["ci95"]
    which = "family-adjusted " if "ci_family" in s else ""
    ci = f"{which}95% CI {100 * iv[0]:+.1f} to {100 * iv[1]:+.1f} points"
    p = s.get("p_holm", s["p"])
    stat = f"{'Holm-adjusted ' if 'p_holm' in s else ''}p={p:.3g}, {s['test'].replace('_', ' ')}"
    if p < alpha:
        better = "better" if s["diff"] > 0 else "worse"
        return f"{task}: the {names[1]} is {better} than the {names[0]} by {pts:+.1f} points ({ci}, {stat})."
    if s.get("tost_p") is not None and s["tost_p"] == s["tost_p"] and s["tost_p"] < alpha:
        return (f"{task}: equivalent: no effect beyond +/-{100 * s['sesoi']:g} points ({pts:+.1f} points, {ci}, "
                f"{stat}; TOST p={s['tost_p']:.3g}).")
    mde = s.get("mde80")
    could = f"; this n could detect about {100 * mde:.1f} points with 80% power" if mde == mde and mde else ""
    return (f"{task}: inconclusive: no significant difference and no equivalence ({pts:+.1f} points, {ci}, "
            f"{stat}{could}).")


def compare_evals(base_dir: Path, adapter_dir: Path, n_boot: int = 10000, seed: int = 0,
                  names: tuple[str, str] = ("base", "adapter"), plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """Paired comparison of evaluation ``adapter_dir`` (b) against ``base_dir`` (a): diff = b - a.
    ``plan`` (analysis/plan.py): the primary tasks, alpha and the equivalence margin; without one,
    the registry's primary tasks at alpha 0.05 and a 3-point margin."""
    for d in (base_dir, adapter_dir):
        if not (d / "metrics.json").is_file():
            raise ConfigError(f"no finished evaluation in {d} (metrics.json missing): set compare.base=<eval dir> "
                              "and compare.adapter=<eval dir>, or run eval_base and eval_adapter first")
    mb, ma = read_json(base_dir / "metrics.json"), read_json(adapter_dir / "metrics.json")
    _check_comparable(base_dir, adapter_dir, mb, ma)
    qa = {q["id"]: q for q in iter_jsonl(base_dir / "questions.jsonl")}
    qb = {q["id"]: q for q in iter_jsonl(adapter_dir / "questions.jsonl")}
    if qa != qb:
        raise ConfigError(f"{base_dir} and {adapter_dir} asked different questions; a paired comparison needs the same")
    tasks = task_registry.ordered(q["task"] for q in qa.values())
    words = {i: q["word"] for i, q in qa.items()}
    alpha = plan["alpha"] if plan else ALPHA
    power = plan["power"] if plan else POWER
    sesoi = plan["sesoi"] if plan else 0.03
    primary = [t for t in plan["primary_tasks"] if t in tasks] if plan else task_registry.primary(tasks)
    out: dict[str, Any] = {"base_dir": str(base_dir), "adapter_dir": str(adapter_dir), "tasks": {},
                           "primary": primary, "order": tasks, "alpha": alpha, "power": power, "sesoi": sesoi,
                           "clustering": "word"}
    if plan:
        out["plan"] = plan
    pa, pb = _per_question(base_dir / "predictions.jsonl"), _per_question(adapter_dir / "predictions.jsonl")
    correct = (_field(pa, "correct"), _field(pb, "correct"))
    fa, fb = forced_choice_scores(base_dir), forced_choice_scores(adapter_dir)
    for scope in [*tasks, "overall"]:
        ids = sorted(i for i, q in qa.items() if scope == "overall" or q["task"] == scope)
        clusters = words  # questions about one word move together: every scope is clustered by word
        strict = _paired(ids, *correct, clusters, n_boot, seed,
                         "primary" if scope in out["primary"] else "exploratory")
        # the strict reading is the only accuracy; what unreadable replies could change is bounded here
        entry: dict[str, Any] = {"strict": strict, "format": answer_format(ids, pa, pb, words, n_boot, seed)}
        if fa and fb and all(i in fa and i in fb for i in ids):  # no parser: blind to the answer's format
            entry["forced_choice"] = _paired(ids, fa, fb, clusters, n_boot, seed, "exploratory")
        clean = [i for i in ids if qa[i].get("contamination") == "clean"]
        if clean and len(clean) < len(ids):  # hold-out words with no trained word inside or around them
            entry["clean"] = _paired(clean, *correct, clusters, n_boot, seed, "exploratory")
        if scope == "overall":
            out["overall"] = entry
            continue
        for key in ("no_answer", "ambiguous", "spelled_out", "truncated"):
            entry[key] = {"base": mb["tasks"][scope][key]["rate"], "adapter": ma["tasks"][scope][key]["rate"]}
        b = mb["tasks"][scope]["baselines"]
        entry["best_baseline"] = {"name": b["best"], "rate": b["rules"][b["best"]]["rate"] if b["best"] else None}
        out["tasks"][scope] = entry
    adjusted = holm([out["tasks"][t]["strict"]["p"] for t in primary])
    level = alpha / max(1, len(primary))  # Holm's strictest step: the level the MDE is stated at
    out["mde_alpha"] = level
    for t, p in zip(primary, adjusted):
        s = out["tasks"][t]["strict"]
        s["p_holm"] = p
        # Bonferroni at the family's size: contains every effect Holm cannot reject, so never contradicts it
        s["ci_family"] = adjusted_interval(s["diff"], s["se"], s["df"], alpha, len(primary))
        # equivalence is concluded within the same family: each one-sided test at alpha / m
        s["tost_p"] = min(1.0, len(primary) * tost(s["diff"], s["se"], s["df"], sesoi))
        s["sesoi"] = sesoi
    for e in [*out["tasks"].values(), out["overall"]]:
        for reading in _readings(e):
            reading["mde80"] = mde_sign_flip(reading.pop("d"), reading.pop("clusters"),
                                             alpha=level if reading is e["strict"] and reading.get("analysis") ==
                                             "primary" else alpha, power=power)
    for t, e in out["tasks"].items():
        e["verdict"] = verdict(t, e["strict"], names, alpha)
    out["names"] = list(names)
    return out


# The control contrasts, B - A, and what each isolates (the random arm trains on random letters of the
# word's length: format exposure only; the placebo on the word's own letters in a wrong order).
ARM_CONTRASTS: dict[str, tuple[str, str, str]] = {
    "spelling_vs_placebo": ("control", "adapter", "real - shuffled: the order of the letters (what position needs)"),
    "placebo_vs_base": ("base", "control", "shuffled - base: format exposure plus the letter inventory"),
    "spelling_vs_random": ("random", "adapter", "real - random: knowledge of the word's letters"),
    "placebo_vs_random": ("random", "control", "shuffled - random: the letter inventory (what count needs)"),
    "random_vs_base": ("base", "random", "random - base: format exposure alone"),
}
ARM_LABELS = {"base": "base model", "adapter": "spelling adapter", "control": "placebo adapter",
              "random": "random-letters adapter"}


def compare_with_control(base_dir: Path, adapter_dir: Path, control_dir: Path | None, n_boot: int = 10000,
                         seed: int = 0, plan: dict[str, Any] | None = None,
                         random_dir: Path | None = None) -> dict[str, Any]:
    """Base, the spelling adapter and its controls on the same questions: the placebo (shuffled
    spellings) and, when it ran, the random-letters adapter (format only).

    The plan's primary contrast (spelling vs placebo by default: both saw the same answer format,
    only one saw true spellings) keeps its Holm-corrected primary rows; every other contrast,
    spelling vs base (the total effect) included, is secondary.
    """
    dirs = {"base": base_dir, "adapter": adapter_dir, "control": control_dir, "random": random_dir}
    out = compare_evals(base_dir, adapter_dir, n_boot, seed, ("base model", "spelling adapter"), plan)
    primary = (plan or {}).get("primary_contrast", "spelling_vs_placebo")
    contrasts = {}
    for name, (a, b, _) in ARM_CONTRASTS.items():
        if dirs[a] is None or dirs[b] is None:
            continue
        contrasts[name] = compare_evals(dirs[a], dirs[b], n_boot, seed, (ARM_LABELS[a], ARM_LABELS[b]), plan)
    for name, c in [("spelling_vs_base", out), *contrasts.items()]:
        if name == primary:
            continue
        for e in [*c["tasks"].values(), c["overall"]]:
            if e["strict"]["analysis"] == "primary":
                e["strict"]["analysis"] = "secondary"
    if control_dir is not None:
        out["control_dir"] = str(control_dir)
    if random_dir is not None:
        out["random_dir"] = str(random_dir)
    out["control"] = contrasts
    out["headline"] = primary
    return out


CONTROL_ARM_STAGES = {"control": (*CONTROL_STAGES, "compare.control"), "random": (*RANDOM_STAGES, "compare.random")}


def compare_arms(base_dir: Path, adapter_dir: Path, control_dir: Path | None, plan: dict[str, Any],
                 n_boot: int = 10000, seed: int = 0, random_dir: Path | None = None) -> dict[str, Any]:
    """The comparison the plan declares: refused, naming the missing arm, when its primary contrast
    needs a control arm that did not run (never a silent fall-back to spelling vs base). Control arms
    that ran are always compared; the plan decides which contrast is primary."""
    found = {arm: Path(d) if d is not None and (Path(d) / "metrics.json").is_file() else None
             for arm, d in (("control", control_dir), ("random", random_dir))}
    primary = plan["primary_contrast"]
    for arm in ARM_CONTRASTS.get(primary, ("base", "adapter"))[:2]:
        if arm in found and found[arm] is None:
            train, evaluate, key = CONTROL_ARM_STAGES[arm]
            where = (control_dir if arm == "control" else random_dir) or f"<run_dir>/{evaluate}"
            raise ConfigError(f"analysis.primary_contrast={primary} but the {ARM_LABELS[arm]}'s evaluation {where} "
                              f"has no metrics.json: run {train} and {evaluate} (or set {key}=<eval dir>), or "
                              "declare another analysis.primary_contrast (e.g. spelling_vs_base) before the run")
    if found["control"] is None and found["random"] is None:
        return compare_evals(base_dir, adapter_dir, n_boot, seed, plan=plan)
    return compare_with_control(base_dir, adapter_dir, found["control"], n_boot, seed, plan, found["random"])


def _map_dirs(c: dict[str, Any], fn) -> dict[str, Any]:
    """``c`` with ``fn`` applied to every ``*_dir`` path, nested comparisons included."""
    out = {}
    for k, v in c.items():
        if k.endswith("_dir") and isinstance(v, str):
            out[k] = fn(v)
        elif isinstance(v, dict) and k == "control":
            out[k] = {name: _map_dirs(sub, fn) for name, sub in v.items()}
        else:
            out[k] = v
    return out


def write_comparison(comparison: dict[str, Any], out_dir: Path) -> Path:
    """``<out_dir>/comparison.json`` with the eval dirs stored relative to it, so a run dir (or a
    whole sweep) can be moved or copied and its report still finds its evaluations."""
    here = Path(out_dir).resolve()
    path = Path(out_dir) / COMPARISON_FILE
    atomic_write_json(path, _map_dirs(comparison, lambda d: os.path.relpath(Path(d).resolve(), here)))
    return path


def read_comparison(path: Path) -> dict[str, Any]:
    """A comparison.json with its eval dirs resolved against where the file is now (an absolute
    path, as older files have, stays as it is)."""
    here = Path(path).parent
    return _map_dirs(read_json(path), lambda d: str((here / d).resolve()))


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _diff(s: dict[str, Any]) -> str:
    """The difference in points with its interval: family-adjusted (marked †) for a primary row."""
    lo, hi = s.get("ci_family") or s["ci95"]
    return f"{100 * s['diff']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]{'†' if 'ci_family' in s else ''}"


def _holm(s: dict[str, Any]) -> str:
    if "p_holm" not in s:
        return ""
    tost_p = s.get("tost_p")
    return f"{s['p_holm']:.3g}" + (f" (TOST {tost_p:.3g})" if tost_p == tost_p and tost_p is not None else "")


def contrasts_table(c: dict[str, Any]) -> list[str]:
    """Every contrast between the arms that ran, with what it isolates, as Markdown lines."""
    rows = [("spelling_vs_base", c, "real - base: the total effect, format included")]
    rows += [(name, c["control"][name], what) for name, (_, _, what) in ARM_CONTRASTS.items() if name in c["control"]]
    lines = ["**Every contrast between the arms** (B − A, strict accuracy; primary rows Holm-adjusted, † "
             "family-adjusted CI; everything else secondary)", "",
             "| contrast | isolates | task | A | B | B − A, points [95% CI] | p (Holm p) |",
             "|---|---|---|---|---|---|---|"]
    for name, comp, what in rows:
        a, b = comp.get("names", ["base", "adapter"])
        for task, e in ordered_tasks(comp):
            st = e["strict"]
            holm_p = f" ({st['p_holm']:.3g})" if "p_holm" in st and st.get("analysis") == "primary" else ""
            lines.append(f"| {name.replace('_', ' ')} | {what.split(': ', 1)[-1]} | {task} | {a} {_pct(st['base'])} | "
                         f"{b} {_pct(st['adapter'])} | {_diff(st) if st.get('analysis') == 'primary' else _plain(st)} "
                         f"| {st['p']:.3g}{holm_p} |")
    return lines


def _plain(s: dict[str, Any]) -> str:
    lo, hi = s["ci95"]
    return f"{100 * s['diff']:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def three_way_table(c: dict[str, Any]) -> list[str]:
    """Base / placebo / spelling per task, spelling − placebo first (the headline), as Markdown lines;
    with the random-letters arm, every contrast between the arms after it."""
    if "spelling_vs_placebo" not in c["control"]:  # only the random-letters arm ran
        return [*contrasts_table(c), "", "**Spelling adapter vs base model**", ""]
    sp, pb = c["control"]["spelling_vs_placebo"], c["control"]["placebo_vs_base"]
    tests = sorted({e["strict"]["test"].replace("_", " ") for e in sp["tasks"].values()})
    n = max(e["strict"]["n"] for e in sp["tasks"].values())
    role = ("headline, primary" if c.get("headline") == "spelling_vs_placebo"
            else f"secondary: the plan's primary contrast is {str(c.get('headline')).replace('_', ' ')}")
    lines = [f"**Spelling vs placebo** ({role}: the effect of spelling knowledge beyond format exposure; "
             f"{n} questions per task, clustered by word; {', '.join(tests)})", "",
             "| task (strict) | base | placebo | spelling | spelling − placebo [95% CI] | p (Holm p, TOST p) | "
             "MDE, 80% power | spelling − base [95% CI] | placebo − base [95% CI] |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task, e in ordered_tasks(sp):
        s, t, f = e["strict"], c["tasks"][task]["strict"], pb["tasks"][task]["strict"]
        holm_p = f" ({_holm(s)})" if "p_holm" in s else ""
        mde = f"{100 * s['mde80']:.1f}" if s.get("mde80") == s.get("mde80") and s.get("mde80") else "n/a"
        lines.append(f"| {task} | {_pct(t['base'])} | {_pct(s['base'])} | {_pct(s['adapter'])} | {_diff(s)} | "
                     f"{s['p']:.3g}{holm_p} | {mde} | {_diff(t)} | {_diff(f)} |")
    lines.append("")
    lines.extend(f"- {e['verdict']}" for _, e in ordered_tasks(sp))
    if "random_vs_base" in c["control"]:
        lines += ["", *contrasts_table(c)]
    lines += ["", "**Spelling adapter vs base model** (secondary: the total effect, format included)", ""]
    return lines


def forced_choice_table(c: dict[str, Any]) -> list[str]:
    """Forced-choice accuracy (no parser) beside strict accuracy, for every contrast that has it."""
    comps = [("spelling vs base", c)] + [(n.replace("_", " "), sub) for n, sub in c.get("control", {}).items()]
    rows = [(name, task, e) for name, comp in comps for task, e in ordered_tasks(comp) if "forced_choice" in e]
    if not rows:
        return []
    lines = ["**Forced choice** (exploratory: the most probable candidate answer, scored without a parser, blind to "
             "answer format; beside the strict generation score)", "",
             "| contrast | task | A → B, forced choice | B − A, forced choice [95% CI] | p | "
             "B − A, strict (generation) |",
             "|---|---|---|---|---|---|"]
    for name, task, e in rows:
        f, st = e["forced_choice"], e["strict"]
        lines.append(f"| {name} | {task} | {_pct(f['base'])} → {_pct(f['adapter'])} | {_plain(f)} | {f['p']:.3g} | "
                     f"{_plain(st)} |")
    return lines


def format_table(c: dict[str, Any]) -> list[str]:
    """Exploratory: how much the strict difference depends on replies the parser could not read,
    and the clean hold-out words, as Markdown lines."""
    names = c.get("names", ["base", "adapter"])
    lines = [f"**Exploratory: answer format** ({names[0]} → {names[1]}). Strict accuracy is the only accuracy; "
             "these say how far unreadable replies could move it.", "",
             "| task | no answer [paired diff, p] | accuracy among answered | both answered: n, diff [95% CI] | "
             "bounds for unanswered: worst, best | clean words: n, diff [95% CI] | ambiguous | spells word out | "
             "truncated |", "|---|---|---|---|---|---|---|---|---|"]
    for task, e in ordered_tasks(c):
        f = e.get("format")
        if f is None:  # a comparison written before the answer-format readings
            lines.append(f"| {task} | (compared by an older version: compare again) | | | | | | | |")
            continue
        na, aa, ba = f["no_answer"], f["answered_accuracy"], f.get("both_answered")
        acc = " → ".join(_pct(aa[k]["rate"]) if aa[k]["rate"] is not None else "n/a" for k in ("base", "adapter"))
        both = f"{ba['n']}: {_diff(ba)}" if ba else "none"
        bounds = f"{100 * f['bounds']['worst']['diff']:+.1f}, {100 * f['bounds']['best']['diff']:+.1f}"
        cl = e.get("clean")
        clean = f"{cl['n']}: {_diff(cl)}" if cl else "all clean"
        cells = [f"{_pct(e[k]['base'])} → {_pct(e[k]['adapter'])}" for k in ("ambiguous", "spelled_out", "truncated")]
        lines.append(f"| {task} | {_pct(na['base'])} → {_pct(na['adapter'])} [{100 * na['diff']:+.1f}, "
                     f"p={na['p']:.3g}] | {acc} | {both} | {bounds} | {clean} | " + " | ".join(cells) + " |")
    return lines


def comparison_table(c: dict[str, Any]) -> str:
    """The answer (primary rows first; spelling vs placebo when the control arm ran), then the
    exploratory readings, as Markdown."""
    lines = three_way_table(c) if "control" in c else []
    if c.get("plan"):
        from spelling_exp.analysis.plan import describe

        lines = [f"- {describe(c['plan'])}", ""] + lines
    lines += ["| task | analysis | questions | base | adapter | diff, points [95% CI] | p (test) | Holm p (TOST p) | "
             "MDE at 80% power | best trivial baseline |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for task, e in ordered_tasks(c):
        s = e["strict"]
        bb = e.get("best_baseline") or {}
        base_line = f"{_pct(bb['rate'])} ({bb['name']})" if bb.get("name") else ""
        holm_p = _holm(s)
        mde = f"{100 * s['mde80']:.1f} points" if s.get("mde80") == s.get("mde80") and s.get("mde80") else "n/a"
        lines.append(f"| {task} (strict) | {s['analysis']} | {s['n']} | {_pct(s['base'])} | {_pct(s['adapter'])} | "
                     f"{_diff(s)} | {s['p']:.3g} ({s['test'].replace('_', ' ')}) | {holm_p} | {mde} | {base_line} |")
    s = c["overall"]["strict"]
    lines.append(f"| all (strict) | exploratory | {s['n']} | {_pct(s['base'])} | {_pct(s['adapter'])} | {_diff(s)} | "
                 f"{s['p']:.3g} ({s['test'].replace('_', ' ')}) | | | |")
    lines.append("")
    lines.extend(f"- {e['verdict']}" for _, e in ordered_tasks(c))
    headline = c.get("headline", "spelling_vs_base")
    which = f"of {headline.replace('_vs_', ' vs ').replace('_', ' ')} " if headline != "spelling_vs_base" else ""
    lines.append(f"- Primary analysis: strict accuracy {which}on {' and '.join(c.get('primary', []))}, co-primary, "
                 f"Holm-corrected at alpha {c.get('alpha', ALPHA)}; MDE (minimum detectable effect) stated at alpha "
                 f"{c.get('mde_alpha', ALPHA):.3g}; † marks a family-adjusted (Bonferroni) 95% CI, which never "
                 "contradicts the Holm verdict; TOST p: equivalence within ±"
                 f"{100 * c.get('sesoi', 0.03):g} points. Questions are clustered by word in every test and interval. "
                 "Everything else is exploratory.")
    if fc := forced_choice_table(c):
        lines += ["", *fc]
    if "spelling_vs_placebo" in c.get("control", {}):  # the primary contrast's own sensitivity first
        lines += ["", *format_table(c["control"]["spelling_vs_placebo"])]
    lines += ["", *format_table(c)]
    return "\n".join(lines) + "\n"
