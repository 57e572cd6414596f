"""Statistics against hand-computed values."""
import math

import pytest

from spelling_exp.analysis.stats import mcnemar_exact, paired_bootstrap_ci, wilson_ci
from spelling_exp.evaluation.metrics import position_offset


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
