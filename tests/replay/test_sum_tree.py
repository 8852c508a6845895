from __future__ import annotations

import numpy as np
import pytest

from rltransfer.replay.sum_tree import SumTree


def test_set_total_and_duplicates_last_wins() -> None:
    tree = SumTree(5)
    tree.set(np.array([0, 1, 2, 3, 4]), np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert tree.total == pytest.approx(15.0)
    tree.set(np.array([2, 2]), np.array([10.0, 0.5]))  # last write wins
    assert tree.get(np.array([2]))[0] == 0.5
    assert tree.total == pytest.approx(12.5)
    np.testing.assert_allclose(tree.leaves, [1.0, 2.0, 0.5, 4.0, 5.0])


def test_find_prefix_sums_hand_values() -> None:
    tree = SumTree(4)
    tree.set(np.arange(4), np.array([1.0, 0.0, 2.0, 3.0]))
    # cumulative intervals: [0,1) -> 0, [1,3) -> 2, [3,6) -> 3; leaf 1 (value 0) never chosen
    u = np.array([0.0, 0.99, 1.0, 2.5, 2.999, 3.0, 5.999])
    np.testing.assert_array_equal(tree.find(u), [0, 0, 2, 2, 2, 3, 3])


def test_find_never_returns_zero_leaf_at_boundaries() -> None:
    tree = SumTree(7)  # padded to 8 leaves
    tree.set(np.arange(7), np.array([0.0, 1e-12, 0.0, 0.3, 0.0, 0.7, 0.0]))
    u = np.array([0.0, tree.total, np.nextafter(tree.total, 0.0), 1e-12, 0.3 + 1e-12])
    found = tree.find(u)
    assert np.all(tree.get(found) > 0)


def test_set_all_matches_incremental() -> None:
    rng = np.random.default_rng(0)
    vals = rng.random(13)
    a, b = SumTree(13), SumTree(13)
    a.set_all(vals)
    b.set(np.arange(13), vals)
    np.testing.assert_allclose(a.nodes, b.nodes)


def test_errors() -> None:
    tree = SumTree(3)
    with pytest.raises(ValueError, match="total is 0"):
        tree.find(np.array([0.0]))
    with pytest.raises(ValueError, match="ids"):
        tree.set(np.array([3]), np.array([1.0]))
    with pytest.raises(ValueError, match="finite"):
        tree.set(np.array([0]), np.array([np.nan]))
    with pytest.raises(ValueError):
        SumTree(0)
