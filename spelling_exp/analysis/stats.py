"""Statistics for paired base-vs-adapter comparisons; the question is the unit of analysis.

Each question gets n_samples >= 1 replies; its score is the mean correctness over its samples (0/1
with one sample). In the "all" scope a word can appear in both tasks, so questions may be clustered
by word: the cluster-aware functions resample, or flip the signs of, whole clusters.

- ``wilson_ci``: Wilson score interval for a binomial proportion.
- ``mean_ci`` / ``paired_diff_ci`` (``paired_bootstrap_ci``): percentile bootstrap over questions or
  clusters of questions.
- ``mcnemar_exact``: exact McNemar test from the discordant counts (binary, one sample).
- ``sign_flip_test``: paired permutation (sign-flip) test over per-question (or per-cluster)
  differences; exact for <= 20 non-zero units, Monte Carlo otherwise.
- ``wilcoxon_signed_rank``: a second paired test (normal approximation).
- ``paired_test``: McNemar for binary one-sample unclustered scores, the sign-flip test otherwise.
- ``holm``: Holm step-down adjusted p-values.
- ``mde_paired`` / ``simulate_power_mcnemar``: minimum detectable difference and simulated power of
  a paired McNemar-type comparison.

Runtime code uses numpy and the standard library only (numpy imported lazily, as importing this
module must stay cheap); tests/test_stats.py checks each function against hand-computed values
and scipy. Random functions are deterministic given ``seed``, and the resampling functions work
in chunks so memory stays bounded (~16 MB of indices or signs at a time) whatever n_boot/n_perm.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Hashable, Sequence
from statistics import NormalDist
from typing import Any

Z95 = 1.959963984540054
EXACT_MAX_UNITS = 20  # sign_flip_test enumerates all 2^k sign patterns up to this many non-zero units
_CHUNK_ELEMS = 2_000_000  # elements per resampling chunk (int64 indices / float64: ~16 MB)


def wilson_ci(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (0, 1) when n == 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval always contains p; min / max only absorb float error (k = 0 gave lo = 3e-17 > p).
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    b = pairs right under A and wrong under B, c = the reverse. Under H0 the discordant pairs
    split Binomial(b + c, 1/2); p = min(1, 2 * P(X <= min(b, c))).
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


# --------------------------------------------------------------------------------------------------
# Bootstrap confidence intervals


def _cluster_index(clusters: Sequence[Hashable], n: int) -> tuple[Any, int]:
    """Integer cluster ids 0..G-1 in order of first appearance, and G."""
    import numpy as np

    if len(clusters) != n:
        raise ValueError(f"clusters has {len(clusters)} labels for {n} values")
    ids: dict[Hashable, int] = {}
    out = np.fromiter((ids.setdefault(c, len(ids)) for c in clusters), dtype=np.int64, count=n)
    return out, len(ids)


def _bootstrap_means(x: Any, clusters: Sequence[Hashable] | None, n_boot: int, seed: int) -> Any:
    """n_boot bootstrap replicates of mean(x): resample items, or whole clusters when given.

    With clusters, G clusters are drawn with replacement and the replicate is the mean over all
    questions in the drawn clusters (sum of their values / number of questions), so clusters of
    different sizes keep their weight. Work is chunked to ~_CHUNK_ELEMS indices at a time.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    if clusters is None:
        n = len(x)
        chunk = max(1, _CHUNK_ELEMS // n)
        for start in range(0, n_boot, chunk):
            m = min(chunk, n_boot - start)
            means[start:start + m] = x[rng.integers(0, n, size=(m, n))].mean(axis=1)
        return means
    gid, g = _cluster_index(clusters, len(x))
    sums = np.bincount(gid, weights=x, minlength=g)
    sizes = np.bincount(gid, minlength=g).astype(float)
    chunk = max(1, _CHUNK_ELEMS // g)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, g, size=(m, g))
        means[start:start + m] = sums[idx].sum(axis=1) / sizes[idx].sum(axis=1)
    return means


def _percentile_ci(x: Any, clusters: Sequence[Hashable] | None, n_boot: int, seed: int,
                   level: float) -> tuple[float, float, float]:
    import numpy as np

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if len(x) == 0:
        return math.nan, math.nan, math.nan
    means = _bootstrap_means(x, clusters, n_boot, seed)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(x.mean()), float(lo), float(hi)


def mean_ci(values: Sequence[float], clusters: Sequence[Hashable] | None = None, n_boot: int = 10000,
            seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lower, upper): percentile bootstrap CI of the mean per-question score.

    values: one score per question (mean correctness over its samples). Without clusters,
    questions are resampled with replacement. With clusters (one hashable label per question,
    e.g. the word), whole clusters are resampled with replacement and each replicate is the mean
    over all questions in the drawn clusters; correlated questions in a cluster then widen the
    interval as they should. (For binary one-sample scores without clusters, ``wilson_ci`` is an
    alternative.) Returns (nan, nan, nan) for no values. Deterministic given seed.
    """
    import numpy as np

    return _percentile_ci(np.asarray(values, dtype=float), clusters, n_boot, seed, level)


def paired_diff_ci(a: Sequence[float], b: Sequence[float], clusters: Sequence[Hashable] | None = None,
                   n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean(b - a), lower, upper): percentile bootstrap CI of the paired mean difference.

    a[i], b[i] are question i's scores under the two models; the pairs (or whole clusters of
    pairs) are resampled together, as in ``mean_ci`` on d = b - a. Returns (nan, nan, nan) for
    no pairs. Without clusters this draws the same resamples as ``paired_bootstrap_ci``.
    """
    import numpy as np

    if len(a) != len(b):
        raise ValueError("paired samples must have equal length")
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    return _percentile_ci(d, clusters, n_boot, seed, level)


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], n_boot: int = 10000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """(mean(b - a), lower, upper): percentile CI from resampling paired items with replacement.

    Kept for existing callers: ``paired_diff_ci`` without clusters, but (0, 0, 0) for no pairs.
    """
    if len(a) != len(b):
        raise ValueError("paired samples must have equal length")
    if len(a) == 0:
        return 0.0, 0.0, 0.0
    return paired_diff_ci(a, b, n_boot=n_boot, seed=seed, level=level)


# --------------------------------------------------------------------------------------------------
# Paired tests


def _units(d: Sequence[float], clusters: Sequence[Hashable] | None) -> Any:
    """Per-question differences, or per-cluster sums of them when clusters are given."""
    import numpy as np

    x = np.asarray(d, dtype=float)
    if clusters is None:
        return x
    gid, g = _cluster_index(clusters, len(x))
    return np.bincount(gid, weights=x, minlength=g)


def sign_flip_test(d: Sequence[float], clusters: Sequence[Hashable] | None = None, n_perm: int = 20000,
                   seed: int = 0) -> float:
    """Two-sided paired permutation (sign-flip) test of mean(d) = 0.

    d: per-question differences (score under B minus score under A). Under H0 each question's
    difference is symmetric about 0, so its sign is exchangeable; with clusters the sign of each
    whole cluster's summed difference is flipped instead (questions in a cluster move together).
    The statistic is T = sum of the unit values (equivalent to the mean over questions, whose count
    does not change under flips), and p = P(|T*| >= |T|) over sign patterns.

    Units with value 0 do not change T* and are dropped. With k <= 20 non-zero units all 2^k
    patterns are enumerated (exact p). Otherwise n_perm random patterns are drawn and
    p = (1 + #{|T*| >= |T|}) / (1 + n_perm), which never returns 0 and is a valid p-value.
    For 0/1 scores (d in {-1, 0, 1}) the exact test equals ``mcnemar_exact``. Returns 1.0 when
    every difference is 0. Deterministic given seed.
    """
    import numpy as np

    u = _units(d, clusters)
    u = u[u != 0]
    k = len(u)
    if k == 0:
        return 1.0
    t_obs = abs(float(u.sum()))
    # float sums of the same values in another order can differ in the last bits: count ties
    tol = 1e-9 * max(1.0, float(np.abs(u).sum()))
    threshold = t_obs - tol
    count = 0
    if k <= EXACT_MAX_UNITS:
        total = 1 << k
        bits = np.arange(k, dtype=np.int64)
        chunk = max(1, _CHUNK_ELEMS // k)
        for start in range(0, total, chunk):
            pats = np.arange(start, min(total, start + chunk), dtype=np.int64)
            signs = 1.0 - 2.0 * ((pats[:, None] >> bits) & 1)
            count += int((np.abs(signs @ u) >= threshold).sum())
        return min(1.0, count / total)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_ELEMS // k)
    for start in range(0, n_perm, chunk):
        m = min(chunk, n_perm - start)
        signs = 1.0 - 2.0 * rng.integers(0, 2, size=(m, k))
        count += int((np.abs(signs @ u) >= threshold).sum())
    return min(1.0, (1 + count) / (1 + n_perm))


def wilcoxon_signed_rank(d: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value for per-question differences d (normal approximation).

    Matches scipy.stats.wilcoxon(d, zero_method="wilcox", correction=False, method="approx"):
    zero differences are dropped; the |d| of the remaining n are ranked with ties given their
    average rank; R+ = sum of ranks of positive d; z = (R+ - n(n+1)/4) / sigma with
    sigma^2 = [n(n+1)(2n+1) - 1/2 * sum over tie groups of t(t^2 - 1)] / 24; p = 2 * (1 - Phi(|z|)).
    Returns 1.0 when every difference is 0 (scipy returns nan there).
    """
    import numpy as np

    x = np.asarray(d, dtype=float)
    x = x[x != 0]
    n = len(x)
    if n == 0:
        return 1.0
    ax = np.abs(x)
    vals, inverse, counts = np.unique(ax, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)  # average rank of a tie group = (first + last) / 2, 1-based
    avg_rank = upper - (counts - 1) / 2.0
    ranks = avg_rank[inverse]
    r_plus = float(ranks[x > 0].sum())
    mean = n * (n + 1) / 4.0
    var = (n * (n + 1) * (2 * n + 1) - 0.5 * float((counts * (counts * counts - 1.0)).sum())) / 24.0
    if var <= 0:
        return 1.0
    z = (r_plus - mean) / math.sqrt(var)
    return min(1.0, math.erfc(abs(z) / math.sqrt(2.0)))


def paired_test(a: Sequence[float], b: Sequence[float], binary: bool, clusters: Sequence[Hashable] | None = None,
                seed: int = 0) -> dict[str, Any]:
    """The paired test comparisons call: B vs A on the same questions.

    When ``binary`` (one sample per question, so every score is 0/1) and there are no clusters:
    McNemar's exact test, {"test": "mcnemar_exact", "p", "b", "c"} with b = questions right under
    A only and c = right under B only. Otherwise the sign-flip test over d = b - a (clusters
    respected): {"test": "sign_flip", "p"}. Raises ValueError if ``binary`` but a score is not 0/1.
    """
    import numpy as np

    if len(a) != len(b):
        raise ValueError("paired samples must have equal length")
    x = np.asarray(a, dtype=float)
    y = np.asarray(b, dtype=float)
    if binary and clusters is None:
        if not (np.isin(x, (0.0, 1.0)).all() and np.isin(y, (0.0, 1.0)).all()):
            raise ValueError("binary=True but some per-question scores are not 0/1")
        only_a = int(((x == 1) & (y == 0)).sum())
        only_b = int(((x == 0) & (y == 1)).sum())
        return {"test": "mcnemar_exact", "p": mcnemar_exact(only_a, only_b), "b": only_a, "c": only_b}
    return {"test": "sign_flip", "p": sign_flip_test(y - x, clusters=clusters, seed=seed)}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in the input order.

    With the m p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted values are
    p~_(i) = max over j <= i of min(1, (m - j + 1) * p_(j)): monotone in the sorted order and
    capped at 1. Rejecting where p~ <= alpha controls the family-wise error rate at alpha.
    NaN p-values stay NaN and do not count towards m.
    """
    idx = [i for i, p in enumerate(pvalues) if not math.isnan(p)]
    out = [math.nan] * len(pvalues)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda j: pvalues[j])):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


# --------------------------------------------------------------------------------------------------
# Power


def mde_paired(n: int, discordant_rate: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable difference in accuracy (absolute fraction) for a paired McNemar-type test.

    n questions, discordance psi = fraction of questions where the two models disagree
    (p10 + p01), two-sided test at alpha. Connor (1987) / Miettinen's normal approximation gives
    the sample size for a difference delta = p01 - p10:

        n = [z_{1-alpha/2} * sqrt(psi) + z_{power} * sqrt(psi - delta^2)]^2 / delta^2

    (null variance psi, alternative variance psi - delta^2 of the per-question difference).
    Solved for delta (the positive root of the quadratic (n + z_b^2) d^2 - 2 z_a sqrt(n psi) d
    + (z_a^2 - z_b^2) psi = 0):

        delta = sqrt(psi) * [z_a * sqrt(n) + z_b * sqrt(n + z_b^2 - z_a^2)] / (n + z_b^2)

    For multi-sample runs (per-question scores in [0, 1]) pass mean |d| over questions as the
    discordance analogue: the null variance of d is mean(d^2), which equals mean |d| for 0/1
    scores and is at most mean |d| otherwise, so the MDE is then slightly conservative.
    Returns nan when n == 0 or psi == 0, and nan when the root exceeds psi (no difference that
    is possible at this discordance, |delta| <= psi, reaches the power). The exact McNemar test is
    a little conservative, so its power at this delta can fall a few points short of ``power``
    for small numbers of discordant pairs: check with ``simulate_power_mcnemar``.
    """
    if n <= 0 or discordant_rate <= 0 or math.isnan(discordant_rate):
        return math.nan
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError("alpha and power must be in (0, 1)")
    za = NormalDist().inv_cdf(1 - alpha / 2)
    zb = NormalDist().inv_cdf(power)
    disc = n + zb * zb - za * za
    if disc < 0:
        return math.nan
    delta = math.sqrt(discordant_rate) * (za * math.sqrt(n) + zb * math.sqrt(disc)) / (n + zb * zb)
    return delta if delta <= discordant_rate else math.nan


@functools.lru_cache(maxsize=64)
def mcnemar_critical_values(n: int, alpha: float) -> tuple[int, ...]:
    """crit[k] = largest m <= k/2 with mcnemar_exact(m, k - m) <= alpha (-1 if none), k = 0..n."""
    crit = []
    for k in range(n + 1):
        m = -1
        while m + 1 <= k // 2 and mcnemar_exact(m + 1, k - m - 1) <= alpha:
            m += 1
        crit.append(m)
    return tuple(crit)


def simulate_power_mcnemar(n: int, p_base: float, diff: float, discordant_rate: float, alpha: float = 0.05,
                           n_sim: int = 2000, seed: int = 0) -> float:
    """Monte Carlo power of the two-sided exact McNemar test (reject when p <= alpha).

    Paired binary outcomes (A, B) per question with P(A = 1) = p_base, P(B = 1) = p_base + diff
    and P(A != B) = discordant_rate = psi. The joint cell probabilities are
    p01 = P(A=0, B=1) = (psi + diff) / 2, p10 = P(A=1, B=0) = (psi - diff) / 2,
    p11 = p_base - p10, p00 = 1 - p11 - p10 - p01 (ValueError when one is negative). Each question
    draws U ~ Uniform(0, 1) and lands in cell 01 if U < p01, 10 if U < psi, 11 if U < psi + p11,
    else 00; each of n_sim replications of n questions gives (b, c) = (#10, #01) and is tested with
    ``mcnemar_exact``. For a fixed seed the same U are reused across diff, so the estimated power
    is monotone in diff >= 0 (common random numbers). Deterministic given seed; memory-bounded.
    """
    import numpy as np

    psi = discordant_rate
    p01, p10 = (psi + diff) / 2, (psi - diff) / 2
    p11 = p_base - p10
    p00 = 1 - p11 - p10 - p01
    if min(p01, p10, p11, p00) < -1e-12:
        raise ValueError(f"no joint distribution with p_base={p_base}, diff={diff}, discordance={psi}")
    if n <= 0 or n_sim <= 0:
        return math.nan
    crit = np.asarray(mcnemar_critical_values(n, float(alpha)))
    rng = np.random.default_rng(seed)
    rejected = 0
    chunk = max(1, _CHUNK_ELEMS // n)
    for start in range(0, n_sim, chunk):
        m = min(chunk, n_sim - start)
        u = rng.random((m, n))
        c = (u < p01).sum(axis=1)
        k = (u < psi).sum(axis=1)
        b = k - c
        rejected += int((np.minimum(b, c) <= crit[k]).sum())
    return rejected / n_sim
