from __future__ import annotations

import numpy as np
import pytest
import rliable.metrics as rl_metrics
from rliable import library as rl_library

from rltransfer.evaluation.aggregate import (
    AggregateInputError,
    Estimate,
    aggregate_scores,
    curves,
    iqm,
)


def test_iqm_by_hand() -> None:
    assert iqm([1, 2, 3, 4]) == pytest.approx(2.5)
    # sorted: -50 1 3 5 6 7 10 100; drop 2 each side -> mean(3, 5, 6, 7) = 5.25
    assert iqm([10, 1, 7, 3, 100, 5, -50, 6]) == pytest.approx(5.25)
    # n = 5: floor(1.25) = 1 dropped each side -> mean(2, 3, 4)
    assert iqm([100, 4, 3, 2, 1]) == pytest.approx(3.0)
    # n < 4: nothing is trimmed
    assert iqm([1, 2, 100]) == pytest.approx(103 / 3)
    assert iqm([7.0]) == pytest.approx(7.0)


def test_iqm_axis_matches_rows() -> None:
    x = np.array([[1.0, 2, 3, 4], [4, 3, 2, 100]])
    np.testing.assert_allclose(iqm(x, axis=1), [2.5, 3.5])  # row 2 sorted: 2 3 4 100
    assert iqm(x) == pytest.approx(rl_metrics.aggregate_iqm(x))


def test_iqm_rejects_nan_and_empty() -> None:
    with pytest.raises(ValueError, match="NaN"):
        iqm([1.0, np.nan, 2.0])
    with pytest.raises(ValueError, match="empty"):
        iqm([])


def test_aggregate_points_match_rliable_and_cis_contain_points() -> None:
    rng = np.random.default_rng(1)
    scores = {
        "a": rng.normal(1.0, 0.5, size=(10, 6)),
        "b": rng.gamma(2.0, 1.0, size=(7, 6)),
    }
    est = aggregate_scores(scores, reps=500, seed=3)
    for name, x in scores.items():
        assert est[name]["iqm"].point == pytest.approx(rl_metrics.aggregate_iqm(x))
        assert est[name]["mean"].point == pytest.approx(rl_metrics.aggregate_mean(x))
        assert est[name]["median"].point == pytest.approx(rl_metrics.aggregate_median(x))
        for e in est[name].values():
            assert isinstance(e, Estimate)
            assert e.low < e.point < e.high
    # reproducible, independent of the dict's order and of the other strategies
    again = aggregate_scores({"b": scores["b"]}, reps=500, seed=3)
    assert again["b"] == est["b"]
    other = aggregate_scores(scores, reps=500, seed=4)
    assert other["a"]["iqm"] != est["a"]["iqm"]


def test_bootstrap_ci_by_hand_two_seeds() -> None:
    # one task, seeds [0, 1]: bootstrap means are 0, 0.5, 1 w.p. 1/4, 1/2, 1/4, so the
    # 2.5% / 97.5% percentiles are exactly 0 and 1.
    est = aggregate_scores({"s": np.array([0.0, 1.0])}, reps=1000, seed=0)["s"]["mean"]
    assert est == Estimate(0.5, 0.0, 1.0)


def test_bootstrap_is_stratified_per_task() -> None:
    # rows (0, 0) and (1, 1). Resampling each task's seeds independently gives replicate means
    # 0, .25, .5, .75, 1 w.p. 1/16, 4/16, 6/16, 4/16, 1/16, so the 10% / 90% percentiles
    # (confidence 0.8) are .25 and .75. Resampling whole rows would give {0, .5, 1} w.p.
    # 1/4, 1/2, 1/4 and the CI [0, 1].
    scores = np.array([[0.0, 0.0], [1.0, 1.0]])
    est = aggregate_scores({"s": scores}, reps=2000, confidence=0.8, metrics=("mean",))
    assert est["s"]["mean"] == Estimate(0.5, 0.25, 0.75)


def test_bootstrap_spread_matches_standard_error() -> None:
    # the bootstrap sd of a mean of n values is sqrt(var_biased / n); the 95% percentile CI of
    # the (near-normal) bootstrap mean spans +-1.96 of those
    x = np.random.default_rng(2).normal(size=(40, 1))
    est = aggregate_scores({"m": x}, reps=4000, metrics=("mean",))["m"]["mean"]
    assert est.high - est.low == pytest.approx(2 * 1.96 * np.sqrt(x.var() / 40), rel=0.1)


def test_intervals_agree_with_unseeded_rliable() -> None:
    x = np.random.default_rng(5).normal(size=(12, 4))
    theirs_point, theirs = rl_library.get_interval_estimates(
        {"a": x}, lambda s: np.array([rl_metrics.aggregate_iqm(s)]), reps=2000
    )
    ours = aggregate_scores({"a": x}, reps=2000, metrics=("iqm",))["a"]["iqm"]
    assert ours.point == pytest.approx(theirs_point["a"][0])
    width = ours.high - ours.low
    assert ours.low == pytest.approx(theirs["a"][0, 0], abs=0.1 * width)
    assert ours.high == pytest.approx(theirs["a"][1, 0], abs=0.1 * width)


def test_callers_global_rng_is_left_alone() -> None:
    np.random.seed(7)  # noqa: NPY002
    expected = np.random.rand(3)  # noqa: NPY002
    np.random.seed(7)  # noqa: NPY002
    aggregate_scores({"a": np.arange(6.0)}, reps=20)
    curves({"c": [(np.array([0, 1]), np.array([0.0, 1.0]))] * 3}, num_points=2, reps=20)
    np.testing.assert_array_equal(np.random.rand(3), expected)  # noqa: NPY002


def test_one_seed_collapses_ci() -> None:
    est = aggregate_scores({"one": np.array([[1.0, 2.0, 4.0]])}, reps=50)["one"]
    assert est["mean"] == Estimate(7 / 3, 7 / 3, 7 / 3)
    assert est["median"] == Estimate(2.0, 2.0, 2.0)
    assert est["iqm"].low == est["iqm"].point == est["iqm"].high


def test_bad_input_raises_value_error() -> None:
    with pytest.raises(ValueError, match="NaN"):
        aggregate_scores({"a": np.array([[1.0, np.nan]])}, reps=10)
    with pytest.raises(ValueError, match="NaN/inf"):
        aggregate_scores({"a": np.array([1.0, np.inf])}, reps=10)
    with pytest.raises(AggregateInputError, match="num_seeds"):
        aggregate_scores({"a": np.zeros((0, 3))}, reps=10)
    with pytest.raises(AggregateInputError, match="unknown metric"):
        aggregate_scores({"a": np.ones(3)}, reps=10, metrics=("max",))
    with pytest.raises(AggregateInputError, match="confidence"):
        aggregate_scores({"a": np.ones(3)}, reps=10, confidence=95)
    with pytest.raises(AggregateInputError, match="reps"):
        aggregate_scores({"a": np.ones(3)}, reps=0)
    with pytest.raises(AggregateInputError, match="seed"):
        aggregate_scores({"a": np.ones(3)}, reps=10, seed=-1)


def test_curves_interpolate_onto_common_grid_by_hand() -> None:
    runs = {
        "s": [
            (np.array([0, 10, 20]), np.array([0.0, 1.0, 2.0])),
            (np.array([0, 5, 20]), np.array([0.0, 0.5, 4.0])),
        ]
    }
    out = curves(runs, num_points=3, metric="mean", reps=200)["s"]
    x, point, low, high = out
    np.testing.assert_allclose(x, [0.0, 10.0, 20.0])
    # seed 2 at 10: 0.5 + (5 / 15) * 3.5 = 5/3
    np.testing.assert_allclose(point, [0.0, (1.0 + 5 / 3) / 2, 3.0])
    assert np.all(low <= point) and np.all(point <= high)
    # 2 seeds: replicate means are (lo+lo)/2, (lo+hi)/2, (hi+hi)/2, so the CI is [lo, hi]
    np.testing.assert_allclose(high[1:], [5 / 3, 4.0])
    np.testing.assert_allclose(low[1:], [1.0, 2.0])


def test_curves_grid_is_the_overlap_and_iqm_one_seed() -> None:
    runs = {
        "a": [(np.array([0, 20]), np.array([0.0, 2.0])), (np.array([5, 30]), np.zeros(2))],
        "b": [(np.array([0, 100]), np.array([0.0, 1.0]))],
    }
    out = curves(runs, num_points=4, reps=50)
    np.testing.assert_allclose(out["a"].x, [5, 10, 15, 20])
    np.testing.assert_allclose(out["b"].point, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_array_equal(out["b"].low, out["b"].point)
    with pytest.raises(AggregateInputError, match="common env-step range"):
        curves({"c": [(np.array([0, 1]), np.zeros(2)), (np.array([2, 3]), np.zeros(2))]})
    with pytest.raises(AggregateInputError, match="non-decreasing"):
        curves({"c": [(np.array([3, 1]), np.zeros(2))]})
    with pytest.raises(ValueError, match="NaN"):
        curves({"c": [(np.array([0, 1]), np.array([0.0, np.nan]))]})


def test_curves_iqm_points_are_per_step_iqm_over_seeds() -> None:
    rng = np.random.default_rng(3)
    x = np.array([0.0, 50.0, 100.0])
    ys = rng.normal(size=(8, 3))
    out = curves({"s": [(x, y) for y in ys]}, num_points=3, metric="iqm", reps=200)["s"]
    # 8 seeds: drop the 2 lowest and 2 highest at each step, average the middle 4
    middle = np.sort(ys, axis=0)[2:6]
    np.testing.assert_allclose(out.point, middle.mean(axis=0))
    assert np.all(out.low < out.point) and np.all(out.point < out.high)
    again = curves({"s": [(x, y) for y in ys]}, num_points=3, metric="iqm", reps=200)["s"]
    np.testing.assert_array_equal(again.low, out.low)
