"""Statistics against hand-computed values and scipy (a test-only dependency)."""
import math

import numpy as np
import pytest
from scipy import stats as sps

from spelling_exp.analysis.stats import (
    holm,
    mcnemar_exact,
    mde_paired,
    mean_ci,
    paired_bootstrap_ci,
    paired_diff_ci,
    paired_test,
    sign_flip_test,
    simulate_power_mcnemar,
    wilcoxon_signed_rank,
    wilson_ci,
)
from spelling_exp.tasks.position import position_offset


def test_wilson_hand_computed():
    # k=8, n=10: p=.8, z^2=3.8415; centre=(.8+.19207)/1.38415=.71674; half=1.96*sqrt(.016+.0096)/1.38415=.22657
    lo, hi = wilson_ci(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_ci(0, 10)[0] == 0.0 and wilson_ci(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_ci(10, 10)[1] == pytest.approx(1.0) and wilson_ci(10, 10)[0] == pytest.approx(0.7225, abs=1e-4)
    assert wilson_ci(0, 0) == (0.0, 1.0)


def test_mcnemar_exact_hand_computed():
    # b=1, c=9: 2 * (C(10,0) + C(10,1)) / 2^10 = 2 * 11 / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    # b=0, c=5: 2 / 32
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0
    # b=2, c=12: 2 * (1 + 14 + 91) / 16384
    assert mcnemar_exact(2, 12) == pytest.approx(2 * 106 / 16384)


def test_paired_bootstrap():
    a = [0, 1, 0, 1, 0, 0, 1, 0, 0, 0] * 20
    b = [1, 1, 0, 1, 1, 0, 1, 1, 0, 0] * 20
    diff, lo, hi = paired_bootstrap_ci(a, b, n_boot=4000, seed=1)
    assert diff == pytest.approx(0.3)
    # se of the mean difference: d in {0,1} with p=.3 -> sqrt(.21/200) = .0324; CI ~ .3 +- .0635
    assert lo == pytest.approx(0.3 - 1.96 * math.sqrt(0.21 / 200), abs=0.015)
    assert hi == pytest.approx(0.3 + 1.96 * math.sqrt(0.21 / 200), abs=0.015)
    assert paired_bootstrap_ci(a, b, n_boot=500, seed=3) == paired_bootstrap_ci(a, b, n_boot=500, seed=3)
    assert paired_bootstrap_ci(a, a, n_boot=100) == (0.0, 0.0, 0.0)


def test_position_offset():
    assert position_offset("banana", 3, "n") == "0"
    assert position_offset("banana", 3, "b") == "-2"
    assert position_offset("banana", 1, "n") == "+2"
    assert position_offset("banana", 3, "z") == "absent"
    assert position_offset("banana", 3, None) == "none"


# --------------------------------------------------------------------------------------------------
# Question-level CIs and paired tests, checked against scipy (a test-only dependency).


def _scores(n, n_samples, p, seed):
    """Per-question mean correctness over n_samples replies."""
    rng = np.random.default_rng(seed)
    return rng.binomial(n_samples, p, size=n) / n_samples


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (8, 10), (10, 10), (37, 150), (149, 150), (1, 1)])
def test_wilson_vs_scipy(k, n):
    ci = sps.binomtest(k, n).proportion_ci(method="wilson")
    assert wilson_ci(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


@pytest.mark.parametrize("b,c", [(0, 0), (0, 1), (1, 9), (3, 3), (7, 20), (40, 61), (100, 70)])
def test_mcnemar_vs_scipy(b, c):
    expected = 1.0 if b + c == 0 else sps.binomtest(min(b, c), b + c, 0.5).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12)


def test_mean_ci_vs_scipy_bootstrap():
    for x in (_scores(150, 1, 0.4, 1), _scores(120, 5, 0.6, 2)):
        mean, lo, hi = mean_ci(x, n_boot=20000, seed=3)
        ref = sps.bootstrap((x,), np.mean, n_resamples=20000, method="percentile", random_state=4,
                            vectorized=True).confidence_interval
        assert mean == pytest.approx(x.mean())
        assert lo == pytest.approx(ref.low, abs=0.01) and hi == pytest.approx(ref.high, abs=0.01)
    assert mean_ci(x, n_boot=500, seed=7) == mean_ci(list(x), n_boot=500, seed=7)  # deterministic
    lo90, hi90 = mean_ci(x, n_boot=4000, level=0.9)[1:]
    lo95, hi95 = mean_ci(x, n_boot=4000, level=0.95)[1:]
    assert lo95 < lo90 < hi90 < hi95
    assert all(math.isnan(v) for v in mean_ci([]))


def test_paired_diff_ci_vs_scipy_bootstrap():
    a, b = _scores(150, 3, 0.45, 5), _scores(150, 3, 0.55, 6)
    diff, lo, hi = paired_diff_ci(a, b, n_boot=20000, seed=1)
    ref = sps.bootstrap((a, b), lambda x, y, axis: np.mean(y - x, axis=axis), paired=True, n_resamples=20000,
                        method="percentile", random_state=2, vectorized=True).confidence_interval
    assert diff == pytest.approx(np.mean(b - a))
    assert lo == pytest.approx(ref.low, abs=0.01) and hi == pytest.approx(ref.high, abs=0.01)
    # paired_bootstrap_ci is the unclustered special case, same resamples
    assert paired_bootstrap_ci(a, b, n_boot=3000, seed=9) == paired_diff_ci(a, b, n_boot=3000, seed=9)
    with pytest.raises(ValueError):
        paired_diff_ci([0, 1], [1])


def test_cluster_bootstrap_respects_duplicates():
    x = _scores(100, 4, 0.5, 11)
    copies = np.repeat(x, 2)
    words = np.repeat([f"w{i}" for i in range(100)], 2)
    _, lo_dedup, hi_dedup = mean_ci(x, n_boot=20000, seed=0)
    m, lo_cl, hi_cl = mean_ci(copies, clusters=words, n_boot=20000, seed=0)
    _, lo_naive, hi_naive = mean_ci(copies, n_boot=20000, seed=0)
    assert m == pytest.approx(x.mean())
    assert hi_cl - lo_cl == pytest.approx(hi_dedup - lo_dedup, rel=0.03)
    assert (hi_naive - lo_naive) / (hi_cl - lo_cl) == pytest.approx(1 / math.sqrt(2), abs=0.05)
    # paired version: the same on differences
    a, b = _scores(100, 4, 0.4, 12), _scores(100, 4, 0.6, 13)
    _, lo_d, hi_d = paired_diff_ci(a, b, n_boot=20000, seed=0)
    _, lo_c, hi_c = paired_diff_ci(np.repeat(a, 2), np.repeat(b, 2), clusters=words, n_boot=20000, seed=0)
    _, lo_n, hi_n = paired_diff_ci(np.repeat(a, 2), np.repeat(b, 2), n_boot=20000, seed=0)
    assert hi_c - lo_c == pytest.approx(hi_d - lo_d, rel=0.03)
    assert (hi_n - lo_n) / (hi_c - lo_c) == pytest.approx(1 / math.sqrt(2), abs=0.05)
    # unequal cluster sizes: the statistic is the mean over all questions in the resample
    vals, cl = [1.0, 1.0, 1.0, 0.0], ["a", "a", "a", "b"]
    boot_mean, lo, hi = mean_ci(vals, clusters=cl, n_boot=4000, seed=0)
    assert boot_mean == 0.75 and lo == 0.0 and hi == 1.0
    with pytest.raises(ValueError):
        mean_ci([1.0, 0.0], clusters=["a"])


def _scipy_sign_flip(d, n_resamples):
    d = np.asarray(d, dtype=float)
    res = sps.permutation_test((d, np.zeros_like(d)), lambda x, y, axis: np.mean(x - y, axis=axis),
                               permutation_type="samples", vectorized=True, n_resamples=n_resamples,
                               alternative="two-sided", random_state=0)
    return res.pvalue


@pytest.mark.parametrize("d", [
    [0.5, 1, 0.25, -0.25, 0, 1, 0.75, 0.5, -0.5, 0.25, 0, 1],
    [1, -1, 1, 1, 0, 1, -1, 1, 1, 1],
    [0.2, -0.4, 0.6, 0.2, -0.2, 0.4, 0.0, -0.6, 0.8, 0.2, 0.4, -0.2, 0.6],
    [0.1, -0.1, 0.2, -0.2],
])
def test_sign_flip_exact_vs_scipy(d):
    assert sign_flip_test(d) == pytest.approx(_scipy_sign_flip(d, np.inf), rel=1e-9)


def test_sign_flip_monte_carlo_vs_scipy():
    d = _scores(60, 4, 0.6, 6) - _scores(60, 4, 0.5, 106)
    assert np.count_nonzero(d) > 20  # Monte Carlo branch
    p = sign_flip_test(d, n_perm=20000, seed=1)
    assert 0.02 < p < 0.06  # a discriminating case: p near the usual threshold
    assert p == pytest.approx(_scipy_sign_flip(d, 20000), abs=0.006)  # MC se ~0.0014 each
    assert sign_flip_test(d, n_perm=2000, seed=5) == sign_flip_test(d, n_perm=2000, seed=5)
    # +1 correction: an extreme statistic never gives p = 0
    assert sign_flip_test(np.ones(40), n_perm=999) == pytest.approx(1 / 1000)
    assert sign_flip_test([0, 0, 0]) == 1.0


def test_sign_flip_binary_equals_mcnemar_and_clusters_sum():
    a = np.array([1, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 1])
    b = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 1])
    only_a, only_b = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    assert sign_flip_test(b - a) == pytest.approx(mcnemar_exact(only_a, only_b))
    d = [0.5, 0.5, -0.25, 1, 0, 0.75, -1, 0.25, 0.5]
    cl = ["x", "x", "y", "z", "z", "w", "v", "v", "u"]
    sums = [1.0, -0.25, 1.0, 0.75, -0.75, 0.5]
    assert sign_flip_test(d, clusters=cl) == pytest.approx(sign_flip_test(sums))
    assert sign_flip_test(d, clusters=cl) == pytest.approx(_scipy_sign_flip(sums, np.inf))


@pytest.mark.parametrize("d", [
    [0.5, 1, 0.25, -0.25, 0, 1, 0.75, 0.5, -0.5, 0.25, 0, 1],  # ties and zeros
    [1, -1, 1, 1, 0, 1, -1, 1, 1, 1, 0, 0],  # McNemar-like: heavy ties
    list(np.random.default_rng(3).normal(0.2, 1, 40)),  # no ties
    [0.2, -0.4, 0.6, 0.2, -0.2, 0.4, 0.0, -0.6, 0.8, 0.2, 0.4, -0.2, 0.6],
    [-1, -0.5, -0.5, 0, 0, 0.5],
])
def test_wilcoxon_vs_scipy(d):
    ref = sps.wilcoxon(d, zero_method="wilcox", correction=False, method="approx").pvalue
    assert wilcoxon_signed_rank(d) == pytest.approx(ref, rel=1e-9)


def test_wilcoxon_all_zero():
    assert wilcoxon_signed_rank([0, 0, 0]) == 1.0


def test_paired_test_dispatch():
    a = [1, 0, 0, 1, 1, 0, 0, 0, 1, 0]
    b = [1, 1, 1, 0, 1, 1, 0, 1, 1, 1]
    r = paired_test(a, b, binary=True)
    assert r == {"test": "mcnemar_exact", "p": mcnemar_exact(1, 5), "b": 1, "c": 5}
    r = paired_test([0.5, 0, 1, 0.25], [1, 0.5, 1, 0.75], binary=False)
    assert r["test"] == "sign_flip" and r["p"] == pytest.approx(sign_flip_test([0.5, 0.5, 0, 0.5]))
    r = paired_test(a, b, binary=True, clusters=list("aabbccddee"))
    assert r["test"] == "sign_flip" and "b" not in r
    with pytest.raises(ValueError):
        paired_test([0.5], [1.0], binary=True)


def test_holm_hand_computed_and_properties():
    # sorted: .01*4=.04, .02*3=.06, .03*2=.06, .04*1=.04 -> monotone .04,.06,.06,.06; back to input order
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.01]) == pytest.approx([0.5, 0.02])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])
    assert holm([]) == [] and holm([0.2]) == [0.2]
    out = holm([0.01, math.nan, 0.04])
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    rng = np.random.default_rng(0)
    p = list(rng.random(12) ** 3)
    adj = holm(p)
    order = np.argsort(p)
    assert all(x >= y for x, y in zip(adj, p)) and max(adj) <= 1.0
    assert all(np.diff(np.asarray(adj)[order]) >= 0)
    assert min(adj) == pytest.approx(12 * min(p))


def test_mde_paired_matches_simulated_power():
    for n, psi in ((150, 0.3), (300, 0.2)):
        mde = mde_paired(n, psi)
        # normal-approximation sample size formula recovers n at the MDE
        za, zb = 1.959963984540054, 0.8416212335729143
        assert (za * math.sqrt(psi) + zb * math.sqrt(psi - mde ** 2)) ** 2 / mde ** 2 == pytest.approx(n)
        # the exact test is a little conservative: its power at the MDE is ~0.77 at these n
        power = simulate_power_mcnemar(n, 0.5, mde, psi, n_sim=8000, seed=1)
        assert power == pytest.approx(0.8, abs=0.05)
    assert mde_paired(150, 0.3, alpha=0.025) > mde_paired(150, 0.3) > mde_paired(600, 0.3)
    assert math.isnan(mde_paired(0, 0.3)) and math.isnan(mde_paired(150, 0.0))


def test_simulate_power_mcnemar():
    assert simulate_power_mcnemar(150, 0.5, 0.0, 0.3, n_sim=4000) <= 0.05 + 0.01  # size
    p1 = simulate_power_mcnemar(150, 0.5, 0.05, 0.3, n_sim=2000, seed=2)
    p2 = simulate_power_mcnemar(150, 0.5, 0.15, 0.3, n_sim=2000, seed=2)
    assert p1 < p2 and p2 > 0.88  # normal approximation: ~0.93
    # against the exact power: K ~ Bin(n, psi) discordant pairs, C | K ~ Bin(K, p01 / psi)
    n, psi, diff = 120, 0.25, 0.1
    exact = sum(sps.binom.pmf(k, n, psi) * sps.binom.pmf(c, k, (psi + diff) / 2 / psi)
                for k in range(n + 1) for c in range(k + 1) if mcnemar_exact(k - c, c) <= 0.05)
    sim = simulate_power_mcnemar(n, 0.4, diff, psi, n_sim=8000, seed=4)
    assert sim == pytest.approx(exact, abs=3 * math.sqrt(exact * (1 - exact) / 8000))
    assert simulate_power_mcnemar(150, 0.5, 0.1, 0.3, seed=3) == simulate_power_mcnemar(150, 0.5, 0.1, 0.3, seed=3)
    with pytest.raises(ValueError):
        simulate_power_mcnemar(100, 0.5, 0.4, 0.3)  # |diff| > discordance


@pytest.mark.parametrize("n", [1, 6, 7, 150, 1001])
def test_wilson_interval_contains_the_estimate_at_the_edges(n):
    """k = 0 once gave a lower bound of 2.8e-17 > 0 from float error (n = 6)."""
    for k in (0, n):
        lo, hi = wilson_ci(k, n)
        assert lo <= k / n <= hi and 0.0 <= lo and hi <= 1.0
    assert wilson_ci(0, n)[0] == 0.0 and wilson_ci(n, n)[1] == 1.0
