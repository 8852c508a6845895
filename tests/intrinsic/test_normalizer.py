from __future__ import annotations

import numpy as np
import pytest
import torch

from rltransfer.intrinsic.normalizer import RunningMeanStd


def test_hand_values() -> None:
    rms = RunningMeanStd((), initial_count=0.0)
    rms.update(np.array([1.0, 3.0]))
    assert rms.mean == pytest.approx(2.0) and rms.var == pytest.approx(1.0)
    rms.update(np.array([5.0]))
    # data 1, 3, 5: mean 3, population variance (4 + 0 + 4) / 3
    assert rms.mean == pytest.approx(3.0) and rms.var == pytest.approx(8 / 3)
    assert rms.count == 3.0


def test_matches_numpy_over_uneven_batches() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, size=(1000, 2, 3))
    rms = RunningMeanStd((2, 3), initial_count=0.0)
    for chunk in np.split(data, [1, 7, 300, 301, 999]):
        rms.update(chunk)
    np.testing.assert_allclose(rms.mean, data.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(rms.var, data.var(axis=0), rtol=1e-10)
    np.testing.assert_allclose(rms.std, data.std(axis=0), rtol=1e-10)


def test_merge_of_two_normalisers() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.uniform(-1, 4, size=(50, 4)), rng.exponential(2.0, size=(70, 4))
    left, right = RunningMeanStd((4,), 0.0), RunningMeanStd((4,), 0.0)
    left.update(a)
    right.update(b)
    left.merge(right)
    both = np.concatenate([a, b])
    np.testing.assert_allclose(left.mean, both.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(left.var, both.var(axis=0), rtol=1e-10)


def test_default_prior_pseudo_count() -> None:
    rms = RunningMeanStd(())
    # prior: mean 0, var 1 with count 1e-4 -> merging the sample [2.0]
    rms.update(np.array([2.0]))
    c = 1e-4
    assert rms.mean == pytest.approx(2.0 / (1 + c))
    assert rms.var == pytest.approx((c * 1.0 + 4.0 * c / (1 + c)) / (1 + c))


def test_state_roundtrip_and_errors() -> None:
    rms = RunningMeanStd((3,))
    rms.update(np.arange(12.0).reshape(4, 3))
    tensors = rms.state_tensors("x.")
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    other = RunningMeanStd((3,))
    other.load_state_tensors(tensors, "x.")
    np.testing.assert_array_equal(other.mean, rms.mean)
    np.testing.assert_array_equal(other.var, rms.var)
    assert other.count == rms.count
    with pytest.raises(ValueError):
        RunningMeanStd((2,)).load_state_tensors(tensors, "x.")
    with pytest.raises(ValueError, match="shape"):
        rms.update(np.zeros((2, 4)))
