from __future__ import annotations

import math

import numpy as np
import pytest

from rltransfer.explore.zeta import sample_zeta, zeta_cdf_table, zeta_pmf


def test_pmf_hand_values_small_truncation() -> None:
    # max_length=3, mu=2: H = 1 + 1/4 + 1/9 = 49/36.
    p = zeta_pmf(np.array([0, 1, 2, 3, 4]), mu=2.0, max_length=3)
    np.testing.assert_allclose(p, [0.0, 36 / 49, 9 / 49, 4 / 49, 0.0], rtol=1e-12)
    # mu=1, max_length=2: H = 1.5.
    np.testing.assert_allclose(zeta_pmf([1, 2], mu=1.0, max_length=2), [2 / 3, 1 / 3])


def test_pmf_default_truncation_matches_euler_maclaurin() -> None:
    n_max = 10_000
    # sum_{n <= N} n^-2 = pi^2/6 - (1/N - 1/(2N^2) + 1/(6N^3) - ...)
    h = math.pi**2 / 6 - (1 / n_max - 1 / (2 * n_max**2) + 1 / (6 * n_max**3))
    assert zeta_pmf(1) == pytest.approx(1 / h, rel=1e-12)
    assert zeta_pmf(7) == pytest.approx(1 / (49 * h), rel=1e-12)
    assert zeta_pmf(10_001) == 0.0
    assert zeta_pmf(np.arange(1, n_max + 1)).sum() == pytest.approx(1.0, rel=1e-12)


def test_cdf_table() -> None:
    cdf = zeta_cdf_table(2.0, 3)
    np.testing.assert_allclose(cdf, [36 / 49, 45 / 49, 1.0])
    assert cdf[-1] == 1.0
    assert not cdf.flags.writeable


def test_sampler_matches_pmf() -> None:
    rng = np.random.default_rng(123)
    num = 200_000
    samples = sample_zeta(rng, num)
    assert samples.dtype == np.int64
    for n in range(1, 6):
        p = float(zeta_pmf(n))
        sigma = math.sqrt(p * (1 - p) / num)
        assert abs(np.mean(samples == n) - p) < 5 * sigma, n
    tail = 1.0 - float(zeta_pmf(np.arange(1, 101)).sum())
    sigma = math.sqrt(tail * (1 - tail) / num)
    assert abs(np.mean(samples > 100) - tail) < 5 * sigma


def test_sampler_small_truncation_distribution_and_bounds() -> None:
    rng = np.random.default_rng(0)
    samples = sample_zeta(rng, (400, 500), mu=2.0, max_length=3)
    assert samples.shape == (400, 500)
    assert samples.min() == 1 and samples.max() == 3
    freq = np.bincount(samples.ravel(), minlength=4)[1:] / samples.size
    np.testing.assert_allclose(freq, [36 / 49, 9 / 49, 4 / 49], atol=0.004)


def test_truncation_never_exceeded() -> None:
    rng = np.random.default_rng(5)
    samples = sample_zeta(rng, 100_000, mu=1.1, max_length=50)
    assert samples.max() <= 50 and samples.min() >= 1
    # mu=1.1 is very heavy-tailed: p(50) is 50^-1.1 / H, so 50 appears.
    assert (samples == 50).any()
    assert np.all(sample_zeta(rng, 1000, max_length=1) == 1)


@pytest.mark.parametrize(("mu", "max_length"), [(0.0, 10), (-1.0, 10), (2.0, 0), (2.0, 2.5)])
def test_bad_parameters(mu: float, max_length: int) -> None:
    with pytest.raises(ValueError):
        sample_zeta(np.random.default_rng(0), 3, mu=mu, max_length=max_length)
    with pytest.raises(ValueError):
        zeta_pmf(1, mu=mu, max_length=max_length)
