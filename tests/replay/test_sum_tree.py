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


def _levelwise_reference(capacity: int, writes: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Node array after ``writes``, rebuilt level by level from the leaves (the layout of
    SumTree: root at 1, leaves at ``size..``)."""
    size = 1
    while size < capacity:
        size *= 2
    leaves = np.zeros(size)
    for idx, vals in writes:
        for i, v in zip(idx, vals, strict=True):  # in order: the last duplicate wins
            leaves[i] = v
    nodes = np.zeros(2 * size)
    nodes[size:] = leaves
    for node in range(size - 1, 0, -1):
        nodes[node] = nodes[2 * node] + nodes[2 * node + 1]
    return nodes


def test_incremental_writes_equal_a_full_rebuild_bit_for_bit() -> None:
    rng = np.random.default_rng(1)
    tree = SumTree(37)
    writes = []
    for _ in range(50):
        idx = rng.integers(0, 37, size=rng.integers(1, 6))
        vals = np.asarray(rng.random(idx.shape[0]), dtype=np.float64) ** 3 * 10.0
        tree.set(idx, vals)
        writes.append((idx, vals))
    # Exact equality: every node is left + right of its current children, summed bottom-up.
    np.testing.assert_array_equal(tree.nodes, _levelwise_reference(37, writes))


def test_find_matches_a_scalar_descent() -> None:
    rng = np.random.default_rng(2)
    tree = SumTree(21)
    vals = rng.random(21)
    vals[[0, 5, 6, 20]] = 0.0
    tree.set(np.arange(21), vals)
    cum = np.cumsum(vals)
    u = rng.random(200) * tree.total
    found = tree.find(u)
    # Leaf k holds [cum[k] - vals[k], cum[k]); away from the boundaries (round-off) the
    # descent must land in the interval that contains u.
    inner = np.min(np.abs(u[:, None] - cum[None, :]), axis=1) > 1e-9
    expected = np.searchsorted(cum, u, side="right")
    np.testing.assert_array_equal(found[inner], expected[inner])
    assert np.all(tree.get(found) > 0)
