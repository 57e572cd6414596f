"""The effect of a training method, not of one adapter: arms trained with several seeds, compared
on the same questions, with seeds and questions both random.

Design: arm A and arm B each have S_a >= 1 evaluations (one per training seed; the base model is
one evaluation, S = 1), every evaluation answers the same Q questions, and a question's score is
the share of its replies that are right. Questions are clustered by word (a word can carry several
questions). The estimate is the difference of the arms' grand means, D = mean(Y_B) - mean(Y_A).

Its variance is a method-of-moments (two-way random effects, crossed seeds x questions) estimate:

    Var(D) = sigma2_seed_A / S_A + sigma2_seed_B / S_B + V_questions

- V_questions: the word-clustered variance of the mean of the per-question difference of the arm
  means over seeds (CR1 sandwich, G / (G - 1)); it holds the questions' own variance and the
  residual (seed x question and reply) noise once.
- sigma2_seed_a / S_a = max(0, var(seed means) / S_a - MS_residual / (S_a Q)): the variance of the
  seed means less the residual noise that V_questions already counts (two-way ANOVA without
  replication, E[MS_seed] = Q sigma2_seed + sigma2_residual).

The interval and the p-value are Student t with Satterthwaite's degrees of freedom (seed parts
with S_a - 1, the question part with G - 1): with five seeds a normal interval from a bootstrap
would cover ~80%, the t interval covers 95% (tests/test_pooled.py, by simulation).

The split of Var(D) into training seeds, questions and reply samples is reported beside it: the
reply part is the within-question binomial variance of the replies (needs >= 2 samples).

Everything here is numpy + the standard library (Student t from the incomplete beta function), so
importing it stays cheap.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Sequence
from statistics import NormalDist
from typing import Any

from spelling_exp.analysis.stats import Z95

# --------------------------------------------------------------------------------------------------
# Student t (no scipy at runtime)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf2(t: float, df: float) -> float:
    """Two-sided tail P(|T| >= |t|) of Student's t with df degrees of freedom (normal when df is inf)."""
    if math.isnan(t) or math.isnan(df):
        return math.nan
    if math.isinf(df):
        return math.erfc(abs(t) / math.sqrt(2.0))
    return min(1.0, betainc(df / 2.0, 0.5, df / (df + t * t)))


def t_quantile(q: float, df: float) -> float:
    """The q-quantile of Student's t (bisection on the CDF; q in (0, 1))."""
    if not 0 < q < 1:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if math.isinf(df):
        return NormalDist().inv_cdf(q)
    if q < 0.5:
        return -t_quantile(1 - q, df)
    target = 2 * (1 - q)  # two-sided tail at the quantile
    lo, hi = 0.0, 1.0
    while t_sf2(hi, df) > target:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_sf2(mid, df) > target else (lo, mid)
    return (lo + hi) / 2


# --------------------------------------------------------------------------------------------------
# Variance pieces


def _cluster_ids(clusters: Sequence[Hashable] | None, n: int) -> tuple[Any, int]:
    import numpy as np

    if clusters is None:
        return np.arange(n), n
    if len(clusters) != n:
        raise ValueError(f"clusters has {len(clusters)} labels for {n} questions")
    ids: dict[Hashable, int] = {}
    gid = np.fromiter((ids.setdefault(c, len(ids)) for c in clusters), dtype=np.int64, count=n)
    return gid, len(ids)


def clustered_var_of_mean(d: Any, gid: Any, g: int) -> float:
    """CR1 variance of mean(d) with questions clustered: G/(G-1) * sum_g (sum of centred d in g)^2 / n^2."""
    import numpy as np

    n = len(d)
    if g < 2:
        return math.nan
    sums = np.bincount(gid, weights=d - d.mean(), minlength=g)
    return float(g / (g - 1) * (sums ** 2).sum() / n ** 2)


def _seed_part(y: Any) -> tuple[float, float, float]:
    """(seed variance of the arm's mean, the residual part of the seed means' variance, raw variance
    of the seed means / S) for one arm's S x Q score matrix; zeros for S = 1."""

    s, q = y.shape
    if s < 2:
        return 0.0, 0.0, 0.0
    row = y.mean(axis=1)
    raw = float(row.var(ddof=1) / s)
    resid = y - row[:, None] - y.mean(axis=0)[None, :] + y.mean()
    ms_e = float((resid ** 2).sum() / ((s - 1) * max(1, q - 1)))
    residual = ms_e / (s * q)
    return max(0.0, raw - residual), residual, raw


def _reply_part(within: Any | None, s: int, q: int, n_samples: int) -> float:
    """Var(arm mean) from reply sampling alone: mean within-question variance / (n_samples S Q)."""
    if within is None or n_samples < 2:
        return math.nan
    return float(within.mean() / (n_samples * s * q))


def pooled_diff(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]],
                clusters: Sequence[Hashable] | None = None, level: float = 0.95,
                within_a: Sequence[Sequence[float]] | None = None, within_b: Sequence[Sequence[float]] | None = None,
                n_samples: int = 1) -> dict[str, Any]:
    """Arm B against arm A over seeds and questions together (see the module docstring).

    a, b: S_a x Q and S_b x Q per-question scores (one row per training seed, the same questions in
    the same order in every row). clusters: one label per question (the word). within_a / within_b:
    optional S x Q within-question variances of the replies (p(1-p) n/(n-1)), for the variance split.
    Returns diff, ci (level), se, df, t, p (two-sided), the variance components and per-seed effects.
    """
    import numpy as np

    ya, yb = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if ya.shape[1] != yb.shape[1]:
        raise ValueError(f"the arms answered different numbers of questions ({ya.shape[1]} vs {yb.shape[1]})")
    q = ya.shape[1]
    if q == 0:
        raise ValueError("no questions")
    gid, g = _cluster_ids(clusters, q)
    diff = float(yb.mean() - ya.mean())
    dq = yb.mean(axis=0) - ya.mean(axis=0)
    v_questions = clustered_var_of_mean(dq, gid, g)
    seed_a, resid_a, _ = _seed_part(ya)
    seed_b, resid_b, _ = _seed_part(yb)
    var = v_questions + seed_a + seed_b
    parts = [(v_questions, g - 1)] + [(v, s - 1) for v, s in ((seed_a, ya.shape[0]), (seed_b, yb.shape[0])) if s > 1]
    denom = sum(v * v / k for v, k in parts if k > 0 and v > 0)
    df = var * var / denom if denom > 0 else math.inf
    se = math.sqrt(var) if var > 0 else 0.0
    crit = t_quantile(1 - (1 - level) / 2, df) if se > 0 else Z95
    t = diff / se if se > 0 else (0.0 if diff == 0 else math.inf)
    p = t_sf2(t, df) if se > 0 else (1.0 if diff == 0 else 0.0)
    wa = np.atleast_2d(np.asarray(within_a, dtype=float)) if within_a is not None else None
    wb = np.atleast_2d(np.asarray(within_b, dtype=float)) if within_b is not None else None
    replies = _reply_part(wa, ya.shape[0], q, n_samples) + _reply_part(wb, yb.shape[0], q, n_samples)
    split = {"seeds": seed_a + seed_b,
             "questions": v_questions - (replies if replies == replies else 0.0),
             "replies": replies}
    return {"diff": diff, "ci": [diff - crit * se, diff + crit * se], "level": level, "se": se, "df": df, "t": t,
            "p": p, "n_questions": q, "n_words": g, "n_seeds": [int(ya.shape[0]), int(yb.shape[0])],
            "variance": {"total": var, **split, "seed_a": seed_a, "seed_b": seed_b,
                         "residual_a": resid_a, "residual_b": resid_b},
            "per_seed": per_seed_effects(ya, yb, gid, g, level)}


def per_seed_effects(ya: Any, yb: Any, gid: Any, g: int, level: float = 0.95) -> list[dict[str, Any]]:
    """Each seed of B against the same seed of A (both trained with it), or against A's mean when A
    has one evaluation (the base model): diff and a word-clustered normal interval over questions."""
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    out = []
    paired = ya.shape[0] == yb.shape[0] and ya.shape[0] > 1
    for s in range(yb.shape[0]):
        ref = ya[s] if paired else ya.mean(axis=0)
        d = yb[s] - ref
        se = math.sqrt(max(0.0, clustered_var_of_mean(d, gid, g)))
        m = float(d.mean())
        out.append({"seed_index": s, "diff": m, "ci": [m - z * se, m + z * se]})
    return out


# --------------------------------------------------------------------------------------------------
# Equivalence, multiplicity, power


def tost(diff: float, se: float, df: float, margin: float) -> float:
    """p of two one-sided t tests of |effect| >= margin (small p: the effect lies within +/- margin)."""
    if se <= 0 or margin <= 0:
        return math.nan
    lower = t_sf2((diff + margin) / se, df) / 2 if diff + margin > 0 else 1 - t_sf2((diff + margin) / se, df) / 2
    upper = t_sf2((margin - diff) / se, df) / 2 if margin - diff > 0 else 1 - t_sf2((margin - diff) / se, df) / 2
    return max(lower, upper)


def adjusted_interval(diff: float, se: float, df: float, alpha: float, m: int) -> list[float]:
    """A Bonferroni interval for a family of m (level 1 - alpha / m): it contains every effect the
    Holm procedure cannot reject at the family's alpha, so it never contradicts the verdicts."""
    if se <= 0:
        return [diff, diff]
    crit = t_quantile(1 - alpha / (2 * max(1, m)), df)
    return [diff - crit * se, diff + crit * se]


def design_se(n_questions: int, n_seeds: int, question_sd: float, seed_sd: float,
              control_seeds: int | None = None) -> tuple[float, float]:
    """(se, df) of D for a design: n_seeds per trained arm (control_seeds for arm A; 0 = the base
    model, untrained), Q questions with per-question difference sd ``question_sd`` (scores averaged
    over seeds: the residual part shrinks with seeds), and a per-arm seed sd ``seed_sd``."""
    sa = n_seeds if control_seeds is None else control_seeds
    v_seed_b = seed_sd ** 2 / n_seeds
    v_seed_a = seed_sd ** 2 / sa if sa > 0 else 0.0
    v_q = question_sd ** 2 / n_questions
    var = v_seed_a + v_seed_b + v_q
    parts = [(v_q, n_questions - 1), (v_seed_b, n_seeds - 1)] + ([(v_seed_a, sa - 1)] if sa > 0 else [])
    denom = sum(v * v / k for v, k in parts if k > 0 and v > 0)
    return math.sqrt(var), (var * var / denom if denom > 0 else math.inf)


@functools.lru_cache(maxsize=16)
def _t_crit_table(alpha: float) -> tuple[Any, Any]:
    """Two-sided critical values of t on a grid of 1/df (interpolated per simulated study)."""
    import numpy as np

    dfs = np.concatenate([np.linspace(1, 10, 37), np.geomspace(10.5, 1e5, 60)])
    return 1.0 / dfs[::-1], np.array([t_quantile(1 - alpha / 2, float(d)) for d in dfs[::-1]])


def power_design(effects: Sequence[float], n_questions: int, n_seeds: int, question_sd: float, seed_sd: float,
                 alpha: float = 0.05, control_seeds: int | None = None, n_sim: int = 20000,
                 seed: int = 0) -> list[float]:
    """Simulated power of the pooled t test (as ``pooled_diff`` runs it) at each true difference.

    Each simulated study draws the estimate D ~ N(effect, se^2) and the variance estimates the test
    uses: the question part scaled chi-square with Q - 1 df, each trained arm's seed part as
    max(0, raw - residual) with raw ~ (seed variance + residual) chi-square(S - 1) / (S - 1) (the
    residual taken as half the question part: reply noise dominates a question's difference), then
    Satterthwaite's df and the t test. Common random numbers across effects: monotone in effect.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    sa = n_seeds if control_seeds is None else control_seeds
    v_q = question_sd ** 2 / n_questions
    se_true = math.sqrt(v_q + seed_sd ** 2 / n_seeds + (seed_sd ** 2 / sa if sa > 0 else 0.0))
    vq_hat = v_q * rng.chisquare(n_questions - 1, n_sim) / (n_questions - 1)
    var_hat, denom = vq_hat.copy(), vq_hat ** 2 / (n_questions - 1)
    for s in (n_seeds, sa):
        if s > 1:
            resid = v_q / 2
            raw = (seed_sd ** 2 / s + resid) * rng.chisquare(s - 1, n_sim) / (s - 1)
            est = np.maximum(0.0, raw - resid)
            var_hat += est
            denom += est ** 2 / (s - 1)
    df_hat = np.where(denom > 0, var_hat ** 2 / np.where(denom > 0, denom, 1), np.inf)
    inv_df, crit_grid = _t_crit_table(alpha)
    crit = np.interp(1.0 / df_hat, inv_df, crit_grid)
    z = rng.standard_normal(n_sim)
    bound = crit * np.sqrt(var_hat)
    return [float((np.abs(e + se_true * z) >= bound).mean()) for e in effects]


def mde_design(n_questions: int, n_seeds: int, question_sd: float, seed_sd: float, alpha: float = 0.05,
               power: float = 0.8, control_seeds: int | None = None, n_sim: int = 20000, seed: int = 0) -> float:
    """Smallest true difference the pooled t test detects with ``power`` (two-sided ``alpha``), by
    bisection on ``power_design``. The closed form (t_{1-alpha/2, df} + t_{power, df}) x se is
    optimistic with few seeds (the estimated seed variance has 2-4 df): simulation is used instead.
    Checked against a full binomial simulation of studies in tests/test_pooled.py."""
    se, df = design_se(n_questions, n_seeds, question_sd, seed_sd, control_seeds)
    lo, hi = 0.0, 4 * (t_quantile(1 - alpha / 2, df) + t_quantile(power, df)) * se
    for _ in range(40):
        mid = (lo + hi) / 2
        got = power_design([mid], n_questions, n_seeds, question_sd, seed_sd, alpha, control_seeds, n_sim, seed)[0]
        lo, hi = (mid, hi) if got < power else (lo, mid)
    return (lo + hi) / 2


def mde_sign_flip(d: Sequence[float], clusters: Sequence[Hashable] | None = None, alpha: float = 0.05,
                  power: float = 0.8) -> float:
    """MDE (absolute fraction) of the paired sign-flip test over per-question differences d (clustered
    by word when given), one training seed per arm.

    The test's statistic is the sum of the unit values u (per question, or per word: the sum of its
    questions' d); under H0 its variance is sum(u^2), so the discordance analogue is mean(u^2), not
    mean |d| (equal only for 0/1 scores without clusters). The normal approximation of
    ``stats.mde_paired`` is solved in units and turned back into a per-question difference.
    """
    import numpy as np

    from spelling_exp.analysis.stats import mde_paired

    x = np.asarray(d, dtype=float)
    if len(x) == 0:
        return math.nan
    gid, g = _cluster_ids(clusters, len(x))
    u = np.bincount(gid, weights=x, minlength=g)
    psi = float((u ** 2).mean())
    if psi <= 0:
        return math.nan
    # mde_paired caps the root at psi (a 0/1 bound); in units the bound is |m| <= sqrt(psi)
    za, zb = NormalDist().inv_cdf(1 - alpha / 2), NormalDist().inv_cdf(power)
    disc = g + zb * zb - za * za
    if disc < 0:
        return math.nan
    m = math.sqrt(psi) * (za * math.sqrt(g) + zb * math.sqrt(disc)) / (g + zb * zb)
    if clusters is None and np.isin(x, (-1.0, 0.0, 1.0)).all():
        return mde_paired(len(x), psi, alpha, power)  # the McNemar case, unchanged
    return m * g / len(x) if m * m <= psi else math.nan
