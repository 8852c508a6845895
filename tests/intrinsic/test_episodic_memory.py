from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import torch

from rltransfer.intrinsic import EpisodicMemory, IntrinsicInputError


def step(memory: EpisodicMemory, *points: tuple[float, ...]) -> np.ndarray:
    return memory.compute_and_insert(torch.tensor(points, dtype=torch.float32)).numpy()


def test_hand_computed_sequence() -> None:
    """k = 2, D = 2; distances, running mean d_m^2, cluster cut, kernel and 1/s by hand."""
    memory = EpisodicMemory(1, 2, capacity=10, num_neighbors=2)
    # Empty memory: no neighbour, reward defined as 0; running mean untouched.
    assert step(memory, (0.0, 0.0)).tolist() == [0.0]
    assert memory.distance_mean == 0.0 and float(memory.distance_count) == 0.0
    # (1,0) vs {(0,0)}: d = [1]; d_m^2 = 1/1 = 1; d_n = 1 - 0.008 = 0.992;
    # K = 0.001 / 0.993 = 0.00100705; s = sqrt(0.00100705) + 0.001 = 0.0327340; r = 30.5492.
    r = step(memory, (1.0, 0.0))
    assert r[0] == pytest.approx(30.549237906, rel=1e-6)
    assert r.dtype == np.float32
    assert memory.distance_mean == 1.0
    # (0,2) vs {(0,0), (1,0)}: d = [4, 5]; d_m^2 = (1 + 4 + 5) / 3 = 10/3;
    # d_n = [1.2, 1.5] - 0.008 = [1.192, 1.492]; K = [0.001/1.193, 0.001/1.493];
    # s = sqrt(0.00083822 + 0.00066979) + 0.001 = 0.0398332; r = 25.1047.
    r = step(memory, (0.0, 2.0))
    assert memory.distance_mean == pytest.approx(10 / 3, rel=1e-12)
    assert r[0] == pytest.approx(25.104703507, rel=1e-6)
    # Revisit (0,0): d = [0, 1, 4] -> 2 nearest [0, 1]; d_m^2 = 11 / 5 = 2.2;
    # d_n = [max(0 - 0.008, 0), 1/2.2 - 0.008] = [0, 0.4465455]; K = [1, 0.001/0.4475455];
    # s = sqrt(1.0022344) + 0.001 = 1.0021166; r = 0.9978879.
    r = step(memory, (0.0, 0.0))
    assert memory.distance_mean == pytest.approx(2.2, rel=1e-12)
    assert r[0] == pytest.approx(0.997887889, rel=1e-6)
    assert memory.fill_counts.tolist() == [4]


@pytest.mark.parametrize(("xi", "expected"), [
    # d = 0.25, d_m^2 = (100 + 0.25) / 2 = 50.125, d_n = 0.0049875 < xi -> 0 -> K = 1,
    # s = 1 + 0.001, r = 1 / 1.001.
    (0.008, 1.0 / 1.001),
    # Without the cut: K = 0.001 / (0.0049875 + 0.001) = 0.167014; s = 0.408673; r = 2.44097.
    (0.0, 2.440970314),
])
def test_cluster_distance_cut(xi: float, expected: float) -> None:
    memory = EpisodicMemory(1, 2, capacity=10, num_neighbors=1, cluster_distance=xi)
    step(memory, (0.0, 0.0))
    step(memory, (10.0, 0.0))  # d = [100]
    r = step(memory, (0.5, 0.0))  # nearest (0,0), d = 0.25
    assert memory.distance_mean == pytest.approx(50.125, rel=1e-12)
    assert r[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("s_max", "expected"), [(1.0, 0.0), (1.01, 0.997887889)])
def test_max_similarity_cut_off(s_max: float, expected: float) -> None:
    """The revisit of test_hand_computed_sequence has s = 1.0021166: above s_max 1 -> 0."""
    memory = EpisodicMemory(1, 2, capacity=10, num_neighbors=2, max_similarity=s_max)
    for point in ((0.0, 0.0), (1.0, 0.0), (0.0, 2.0)):
        step(memory, point)
    assert step(memory, (0.0, 0.0))[0] == pytest.approx(expected, rel=1e-6)


def test_kernel_epsilon_option() -> None:
    """eps = 1e-4 (the appendix value): (1,0) vs {(0,0)}: K = 1e-4 / (0.992 + 1e-4)."""
    memory = EpisodicMemory(1, 2, capacity=10, kernel_epsilon=1e-4)
    step(memory, (0.0, 0.0))
    expected = 1.0 / (math.sqrt(1e-4 / 0.9921) + 1e-3)
    assert step(memory, (1.0, 0.0))[0] == pytest.approx(expected, rel=1e-6)


def test_full_memory_overwrites_oldest() -> None:
    memory = EpisodicMemory(1, 2, capacity=2, num_neighbors=10)
    step(memory, (0.0, 0.0))
    step(memory, (1.0, 0.0))  # d = [1]
    step(memory, (5.0, 0.0))  # d = [25, 16]; (0,0) is then overwritten
    assert memory.fill_counts.tolist() == [2]
    assert sorted(memory.memory[0].tolist()) == [[1.0, 0.0], [5.0, 0.0]]
    r = step(memory, (0.0, 0.0))  # vs {(1,0), (5,0)}: d = [1, 25], not [0, ...]
    mean = (1 + 25 + 16 + 1 + 25) / 5
    kernel = sum(1e-3 / (max(d / mean - 0.008, 0.0) + 1e-3) for d in (1.0, 25.0))
    assert r[0] == pytest.approx(1.0 / (math.sqrt(kernel) + 1e-3), rel=1e-6)


def test_reset_clears_only_masked_envs() -> None:
    memory = EpisodicMemory(3, 2, capacity=10, num_neighbors=2)
    for t in range(3):
        memory.compute_and_insert(torch.tensor([[t, 0.0], [0.0, t], [t, t]]))
    memory.reset(np.array([True, False, True]))
    assert memory.fill_counts.tolist() == [0, 3, 0]
    r = memory.compute_and_insert(torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])).numpy()
    assert r[0] == 0.0 and r[2] == 0.0  # empty memories
    # env 1 held (0,0), (0,1), (0,2): revisiting (0,0) gives d = [0, 1] as nearest 2.
    assert r[1] > 0.0
    assert memory.fill_counts.tolist() == [1, 4, 1]
    with pytest.raises(IntrinsicInputError, match="done_mask"):
        memory.reset(np.ones(2, dtype=bool))


class ReferenceMemory:
    """Per-env NGU episodic reward with Python loops (sorting), for comparison."""

    def __init__(self, num_envs: int, capacity: int, k: int) -> None:
        self.memories: list[deque[np.ndarray]] = [deque(maxlen=capacity) for _ in range(num_envs)]
        self.k = k
        self.total, self.count = 0.0, 0

    def step(self, q: np.ndarray) -> np.ndarray:
        dists = []
        for b, memory in enumerate(self.memories):
            d = sorted(float(((m - q[b]) ** 2).sum()) for m in memory)[: self.k]
            dists.append(d)
            self.total += sum(d)
            self.count += len(d)
        out = np.zeros(len(self.memories))
        for b, d in enumerate(dists):
            if d:
                mean = self.total / self.count
                kernel = sum(1e-3 / (max(x / mean - 0.008, 0.0) + 1e-3) for x in d)
                s = math.sqrt(kernel) + 1e-3
                out[b] = 1.0 / s if s <= 8.0 else 0.0
            self.memories[b].append(q[b].copy())
        return out

    def reset(self, mask: np.ndarray) -> None:
        for b in np.flatnonzero(mask):
            self.memories[b].clear()


def test_batched_equals_per_env_reference() -> None:
    rng = np.random.default_rng(0)
    num_envs, dim, capacity, k = 5, 3, 6, 3
    memory = EpisodicMemory(num_envs, dim, capacity=capacity, num_neighbors=k)
    reference = ReferenceMemory(num_envs, capacity, k)
    for t in range(40):
        # Coarse grid points: exact duplicates (revisits) happen often.
        q = rng.integers(-2, 3, size=(num_envs, dim)).astype(np.float32) * 0.5
        expected = reference.step(q)
        got = memory.compute_and_insert(q).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7, err_msg=f"step {t}")
        if t % 7 == 3:
            mask = rng.random(num_envs) < 0.4
            memory.reset(mask)
            reference.reset(mask)
        assert memory.fill_counts.tolist() == [len(m) for m in reference.memories]
    assert memory.distance_mean == pytest.approx(reference.total / reference.count, rel=1e-9)


def test_insert_many_matches_sequential_insertion() -> None:
    rng = np.random.default_rng(1)
    points = rng.normal(size=(2, 9, 4)).astype(np.float32)
    bulk = EpisodicMemory(2, 4, capacity=5)
    bulk.insert_many(points[:, :3])
    bulk.insert_many(points[:, 3:])
    one_by_one = EpisodicMemory(2, 4, capacity=5)
    for t in range(9):
        one_by_one._write(torch.from_numpy(points[:, t]))
    assert bulk.fill_counts.tolist() == [5, 5]
    torch.testing.assert_close(bulk.memory, one_by_one.memory)
    torch.testing.assert_close(bulk.sq_norms, one_by_one.sq_norms)
    q = rng.normal(size=(2, 4)).astype(np.float32)
    torch.testing.assert_close(bulk.compute_and_insert(q), one_by_one.compute_and_insert(q))


def test_shape_errors_and_state_roundtrip() -> None:
    memory = EpisodicMemory(2, 3, capacity=4)
    with pytest.raises(IntrinsicInputError, match=r"\[B, D\]"):
        memory.compute_and_insert(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="capacity"):
        EpisodicMemory(2, 3, capacity=0)
    memory.compute_and_insert(np.zeros((2, 3), np.float32))
    memory.compute_and_insert(np.ones((2, 3), np.float32))
    state = memory.state_tensors()
    restored = EpisodicMemory(2, 3, capacity=4)
    restored.load_state_tensors(state)
    assert restored.distance_mean == memory.distance_mean == 3.0
    assert restored.fill_counts.tolist() == [0, 0]
