"""analysis/pooled.py: the effect of the training method over seeds and questions, checked by
simulation (interval coverage, MDE against simulated power) and against scipy / a permutation
over words. Simulated studies are small numpy arrays: the whole file runs in seconds."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from spelling_exp.analysis.pooled import (
    adjusted_interval,
    betainc,
    design_se,
    mde_design,
    mde_sign_flip,
    pooled_diff,
    t_quantile,
    t_sf2,
    tost,
)
from spelling_exp.analysis.stats import sign_flip_test


def test_student_t_matches_scipy():
    for df in (1, 2.5, 4, 9.3, 30, 400):
        for t in (0.0, 0.3, 1.0, 2.0, 4.5):
            assert t_sf2(t, df) == pytest.approx(2 * sps.t.sf(t, df), rel=1e-9, abs=1e-12)
        for q in (0.6, 0.8, 0.975, 0.999):
            assert t_quantile(q, df) == pytest.approx(sps.t.ppf(q, df), rel=1e-7)
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(sps.beta.cdf(0.4, 2.0, 3.0), rel=1e-12)
    assert t_quantile(0.975, math.inf) == pytest.approx(1.959964, rel=1e-6)


def simulate_study(rng, n_words=150, per_word=2, seeds=(5, 5), seed_sd=0.02, effect=0.03, n_samples=3):
    """Scores of two trained arms (S seeds each) on the same questions: a question's true accuracy,
    a per-arm-and-seed shift (the training seed), binomial replies; words carry correlated questions."""
    word_p = rng.beta(2, 2, n_words)
    p = np.clip(np.repeat(word_p, per_word) + rng.normal(0, 0.1, n_words * per_word), 0.02, 0.98)
    words = np.repeat(np.arange(n_words), per_word)
    arms = []
    for s, shift in zip(seeds, (0.0, effect)):
        u = rng.normal(0, seed_sd, (s, 1)) if s > 1 else np.zeros((1, 1))
        arms.append(rng.binomial(n_samples, np.clip(p[None, :] + shift + u, 0, 1)) / n_samples)
    return arms[0], arms[1], words


def test_pooled_interval_covers_the_method_effect_where_one_seed_does_not():
    rng = np.random.default_rng(7)
    covered = covered_one = 0
    n = 1000
    for _ in range(n):
        a, b, words = simulate_study(rng)
        r = pooled_diff(a, b, clusters=words)
        covered += r["ci"][0] <= 0.03 <= r["ci"][1]
        one = pooled_diff(a[:1], b[:1], clusters=words)  # one adapter per arm: the seed is invisible
        covered_one += one["ci"][0] <= 0.03 <= one["ci"][1]
    assert 0.93 <= covered / n <= 0.97, covered / n
    assert covered_one / n < 0.85, covered_one / n


def test_pooled_without_seed_variance_is_the_clustered_paired_analysis():
    rng = np.random.default_rng(3)
    a, b, words = simulate_study(rng, seeds=(1, 1), effect=0.05)
    r = pooled_diff(a, b, clusters=words)
    d = (b - a)[0]
    perm = sign_flip_test(d, clusters=list(words), n_perm=200000, seed=1)  # the reference: a permutation over words
    assert r["p"] == pytest.approx(perm, rel=0.15, abs=0.003)
    assert r["variance"]["seeds"] == 0 and r["n_words"] == 150
    # clustering matters: each question asked twice about one word is not twice the evidence
    twice = pooled_diff(np.repeat(a, 2, axis=1), np.repeat(b, 2, axis=1), clusters=np.repeat(words, 2))
    flat = pooled_diff(np.repeat(a, 2, axis=1), np.repeat(b, 2, axis=1))
    assert twice["se"] == pytest.approx(r["se"], rel=0.01) and flat["se"] < 0.75 * twice["se"]


def test_variance_split_and_per_seed_effects():
    rng = np.random.default_rng(5)
    a, b, words = simulate_study(rng, seeds=(4, 4), seed_sd=0.05, n_samples=4)
    within = lambda y: y * (1 - y) * 4 / 3  # noqa: E731 - binomial variance of 4 replies
    r = pooled_diff(a, b, clusters=words, within_a=within(a), within_b=within(b), n_samples=4)
    v = r["variance"]
    assert v["seeds"] > v["questions"] > 0 and v["replies"] > 0
    assert v["total"] == pytest.approx(v["seeds"] + v["questions"] + v["replies"])
    assert len(r["per_seed"]) == 4
    assert np.mean([e["diff"] for e in r["per_seed"]]) == pytest.approx(r["diff"])
    base = pooled_diff(a[:1], b, clusters=words)  # the base model: one evaluation against a seeded arm
    assert base["n_seeds"] == [1, 4] and base["variance"]["seed_a"] == 0


def test_mde_of_the_sign_flip_test_with_several_samples_matches_simulation():
    """500 questions x 5 samples, one seed: the MDE from mean(u^2) brackets 80% simulated power
    within 10% (mean |d| overstated it by ~60%)."""
    rng = np.random.default_rng(11)
    n, k = 500, 5
    p = rng.beta(2, 2, n)
    words = np.arange(n) // 2

    def draw(effect):
        a = rng.binomial(k, p) / k
        b = rng.binomial(k, np.clip(p + effect, 0, 1)) / k
        return b - a

    d0 = draw(0.0)
    mde = mde_sign_flip(d0, clusters=list(words), alpha=0.025)
    old = float(np.abs(d0).mean())
    assert 0.02 < mde < 0.06

    def power(effect, sims=300):
        return np.mean([sign_flip_test(draw(effect), clusters=list(words), n_perm=2000, seed=i) <= 0.025
                        for i in range(sims)])

    assert power(0.9 * mde) < 0.8 < power(1.1 * mde)
    from spelling_exp.analysis.stats import mde_paired

    assert mde_paired(n, old, alpha=0.025) > 1.3 * mde  # the old statement, for the record


def test_design_mde_matches_simulation():
    """mde_design for 3 seeds per arm: simulated power of the pooled t test brackets 80%."""
    q_words, per_word, seeds, seed_sd = 150, 2, 3, 0.02
    rng = np.random.default_rng(2)
    # the per-question sd of the seed-averaged difference, measured on null studies (as a pilot would)
    sds = [np.std(b.mean(0) - a.mean(0)) for a, b, _ in (simulate_study(rng, q_words, per_word, (seeds, seeds),
                                                                        seed_sd, 0.0) for _ in range(20))]
    question_sd = float(np.mean(sds)) * math.sqrt(seeds)  # per question and seed: design_se averages seeds
    mde = mde_design(q_words * per_word, seeds, question_sd / math.sqrt(seeds), seed_sd)

    def power(effect, sims=400):
        hits = 0
        for _ in range(sims):
            a, b, words = simulate_study(rng, q_words, per_word, (seeds, seeds), seed_sd, effect)
            hits += pooled_diff(a, b, clusters=words)["p"] <= 0.05
        return hits / sims

    assert power(0.9 * mde) < 0.8 < power(1.1 * mde)


def test_design_se_grows_with_seed_sd_and_shrinks_with_seeds():
    assert design_se(500, 5, 0.3, 0.0)[0] == pytest.approx(0.3 / math.sqrt(500))
    assert design_se(500, 5, 0.3, 0.02)[0] > design_se(500, 10, 0.3, 0.02)[0]
    assert design_se(500, 5, 0.3, 0.02, control_seeds=0)[0] < design_se(500, 5, 0.3, 0.02)[0]


def test_tost_and_adjusted_interval():
    # an effect near 0 with a small se is equivalent within +/- 3 points; a wide one is not
    assert tost(0.002, 0.008, 200, 0.03) < 0.025
    assert tost(0.002, 0.03, 200, 0.03) > 0.1
    assert tost(0.05, 0.008, 200, 0.03) > 0.9
    # large df: the normal TOST
    z = sps.norm.sf
    assert tost(0.01, 0.01, math.inf, 0.03) == pytest.approx(max(z(4.0), z(2.0)), rel=1e-9)
    lo, hi = adjusted_interval(0.05, 0.01, 100, 0.05, 2)
    assert hi - 0.05 == pytest.approx(sps.t.ppf(1 - 0.0125, 100) * 0.01, rel=1e-7)
    assert lo < 0.05 < hi
