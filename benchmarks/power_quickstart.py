"""Re-check the quickstart power claim by simulation.

conf/experiment/quickstart.yaml says: "150 paired questions per task ... give a McNemar test ~80%
power for a ~12-point change at p < 0.05". Power of a paired McNemar comparison depends on the
number of questions n, the difference delta (accuracy of B minus A) and the discordance psi (the
fraction of questions where the two models disagree), not on the base accuracy. For n = 150 and a
grid of psi (the real quickstart run has ~25-35% discordance) and delta, this prints:

  - the simulated power of the two-sided exact McNemar test (``simulate_power_mcnemar``),
  - the minimum detectable difference (MDE) at 80% power: the normal-approximation formula
    (``mde_paired``, Connor 1987), the simulated MDE (bisection on delta with common random
    numbers, so simulated power is monotone in delta) and the exact MDE (power computed by
    enumerating K ~ Bin(n, psi) discordant pairs and C | K ~ Bin(K, (psi + delta) / (2 psi))),

at alpha = 0.05 and alpha = 0.025 (Holm's first step with two co-primary tasks). Results go to
benchmarks/results/power_quickstart.json. numpy only; ~10 s on 2 cores at the default --n-sim.
"""
from __future__ import annotations

import argparse
import math
import sys
import time

from _common import ROOT, print_table, write_results

sys.path.insert(0, str(ROOT))

from spelling_exp.analysis.stats import (  # noqa: E402
    mcnemar_critical_values,
    mde_paired,
    simulate_power_mcnemar,
)

N = 150
P_BASE = 0.5  # irrelevant to McNemar power; only has to make the joint distribution feasible
DISCORDANCE = (0.15, 0.25, 0.35, 0.45)
DIFFS = tuple(range(4, 21, 2))  # accuracy points
ALPHAS = (0.05, 0.025)
POWER = 0.8


def _log_binom_pmf(k: int, n: int, p: float) -> float:
    if p <= 0:
        return 0.0 if k == 0 else -math.inf
    if p >= 1:
        return 0.0 if k == n else -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def exact_power(n: int, diff: float, psi: float, alpha: float) -> float:
    """Exact power of the two-sided exact McNemar test (reject when p <= alpha), by enumeration."""
    crit = mcnemar_critical_values(n, alpha)
    q = (psi + diff) / (2 * psi)
    total = 0.0
    for k in range(n + 1):
        if crit[k] < 0:
            continue
        pk = math.exp(_log_binom_pmf(k, n, psi))
        rej = sum(math.exp(_log_binom_pmf(c, k, q)) for c in range(k + 1) if min(c, k - c) <= crit[k])
        total += pk * rej
    return total


def bisect_mde(power_of, hi: float, tol: float = 5e-4) -> float | None:
    """Smallest delta in (0, hi] with power_of(delta) >= POWER (power monotone in delta); None if none."""
    if power_of(hi) < POWER:
        return None
    lo = 0.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        if power_of(mid) >= POWER:
            hi = mid
        else:
            lo = mid
    return hi


def pts(x: float | None) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=N)
    ap.add_argument("--n-sim", type=int, default=20000, help="Monte Carlo replications per cell")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()

    results: dict = {"n": args.n, "n_sim": args.n_sim, "seed": args.seed, "p_base": P_BASE, "target_power": POWER,
                     "claim": "150 paired questions per task give a McNemar test ~80% power for a ~12-point "
                              "change at p < 0.05 (conf/experiment/quickstart.yaml)",
                     "power": [], "mde": []}
    for alpha in ALPHAS:
        rows = []
        for psi in DISCORDANCE:
            row = {"discordance": f"{psi:.2f}"}
            for d in DIFFS:
                delta = d / 100
                if delta > psi:
                    row[f"{d}pt"] = "-"
                    continue
                sim = simulate_power_mcnemar(args.n, P_BASE, delta, psi, alpha=alpha, n_sim=args.n_sim, seed=args.seed)
                exact = exact_power(args.n, delta, psi, alpha)
                row[f"{d}pt"] = f"{sim:.2f}"
                results["power"].append({"alpha": alpha, "discordance": psi, "diff": delta, "power_sim": sim,
                                         "power_exact": exact})
            rows.append(row)
        print(f"\nSimulated power of the exact McNemar test, n={args.n}, alpha={alpha} "
              f"({args.n_sim} replications per cell; '-' = difference larger than the discordance)")
        print_table(rows, ["discordance", *(f"{d}pt" for d in DIFFS)])

    mde_rows = []
    for alpha in ALPHAS:
        for psi in DISCORDANCE:
            formula = mde_paired(args.n, psi, alpha=alpha, power=POWER)
            sim = bisect_mde(lambda x, a=alpha, p=psi: simulate_power_mcnemar(
                args.n, P_BASE, x, p, alpha=a, n_sim=args.n_sim, seed=args.seed), psi)
            exact = bisect_mde(lambda x, a=alpha, p=psi: exact_power(args.n, x, p, a), psi)
            power_at_formula = exact_power(args.n, formula, psi, alpha) if not math.isnan(formula) else None
            results["mde"].append({"alpha": alpha, "discordance": psi, "mde_formula": formula, "mde_sim": sim,
                                   "mde_exact": exact, "exact_power_at_formula_mde": power_at_formula})
            mde_rows.append({"alpha": alpha, "discordance": f"{psi:.2f}", "MDE formula (pts)": pts(formula),
                             "MDE simulated (pts)": pts(sim), "MDE exact (pts)": pts(exact),
                             "exact power at formula MDE": "n/a" if power_at_formula is None
                             else f"{power_at_formula:.3f}"})
    print(f"\nMinimum detectable difference at {POWER:.0%} power, n={args.n} (accuracy points)")
    print_table(mde_rows, ["alpha", "discordance", "MDE formula (pts)", "MDE simulated (pts)", "MDE exact (pts)",
                           "exact power at formula MDE"])

    p12 = {(r["alpha"], r["discordance"]): r["power_exact"] for r in results["power"] if r["diff"] == 0.12}
    print("\nPower for a 12-point change (exact): " + "; ".join(
        f"alpha={a}, psi={psi:.2f}: {p12[(a, psi)]:.2f}" for a in ALPHAS for psi in DISCORDANCE if (a, psi) in p12))
    results["seconds"] = time.perf_counter() - t0
    print(f"({results['seconds']:.1f} s)")
    write_results("power_quickstart", results)


if __name__ == "__main__":
    main()
