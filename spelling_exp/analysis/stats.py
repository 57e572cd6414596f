"""Statistics: Wilson score intervals, McNemar's exact test, paired bootstrap.

Plain functions, checked against hand-computed cases in tests/test_stats.py.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

Z95 = 1.959963984540054


def wilson_ci(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (0, 1) when n == 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


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


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], n_boot: int = 10000, seed: int = 0,
                        level: float = 0.95) -> tuple[float, float, float]:
    """(mean(b - a), lower, upper): percentile CI from resampling paired items with replacement."""
    import numpy as np

    if len(a) != len(b):
        raise ValueError("paired samples must have equal length")
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    n = len(d)
    if n == 0:
        return 0.0, 0.0, 0.0
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // n)  # bound memory to ~16 MB of indices at a time
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        means[start:start + m] = d[rng.integers(0, n, size=(m, n))].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return float(d.mean()), float(lo), float(hi)
