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
    """k = 2, D = 2; distances, running mean d_m^2 (cumulative: decay 1), cluster cut, kernel
    and 1/s by hand."""
    memory = EpisodicMemory(1, 2, capacity=10, num_neighbors=2, distance_decay=1.0)
    # Empty memory: no neighbour, reward defined as 0; running mean untouched.
    assert step(memory, (0.0, 0.0)).tolist() == [0.0]
    assert memory.distance_mean.tolist() == [0.0] and memory.distance_count.tolist() == [0.0]
    # (1,0) vs {(0,0)}: d = [1]; d_m^2 = 1/1 = 1; d_n = 1 - 0.008 = 0.992;
    # K = 0.001 / 0.993 = 0.00100705; s = sqrt(0.00100705) + 0.001 = 0.0327340; r = 30.5492.
    r = step(memory, (1.0, 0.0))
    assert r[0] == pytest.approx(30.549237906, rel=1e-6)
    assert r.dtype == np.float32
    assert memory.distance_mean.tolist() == [1.0]
    # (0,2) vs {(0,0), (1,0)}: d = [4, 5]; d_m^2 = (1 + 4 + 5) / 3 = 10/3;
    # d_n = [1.2, 1.5] - 0.008 = [1.192, 1.492]; K = [0.001/1.193, 0.001/1.493];
    # s = sqrt(0.00083822 + 0.00066979) + 0.001 = 0.0398332; r = 25.1047.
    r = step(memory, (0.0, 2.0))
    assert memory.distance_mean[0] == pytest.approx(10 / 3, rel=1e-12)
    assert r[0] == pytest.approx(25.104703507, rel=1e-6)
    # Revisit (0,0): d = [0, 1, 4] -> 2 nearest [0, 1]; d_m^2 = 11 / 5 = 2.2;
    # d_n = [max(0 - 0.008, 0), 1/2.2 - 0.008] = [0, 0.4465455]; K = [1, 0.001/0.4475455];
    # s = sqrt(1.0022344) + 0.001 = 1.0021166; r = 0.9978879.
    r = step(memory, (0.0, 0.0))
    assert memory.distance_mean[0] == pytest.approx(2.2, rel=1e-12)
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
    memory = EpisodicMemory(1, 2, capacity=10, num_neighbors=1, cluster_distance=xi,
                            distance_decay=1.0)
    step(memory, (0.0, 0.0))
    step(memory, (10.0, 0.0))  # d = [100]
    r = step(memory, (0.5, 0.0))  # nearest (0,0), d = 0.25
    assert memory.distance_mean[0] == pytest.approx(50.125, rel=1e-12)
    assert r[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("s_max", "expected"), [(1.0, 0.0), (1.01, 0.997887889)])
def test_max_similarity_cut_off(s_max: float, expected: float) -> None:
    """The revisit of test_hand_computed_sequence has s = 1.0021166: above s_max 1 -> 0."""
    memory = EpisodicMemory(1, 2, capacity=10, num_neighbors=2, max_similarity=s_max,
                            distance_decay=1.0)
    for point in ((0.0, 0.0), (1.0, 0.0), (0.0, 2.0)):
        step(memory, point)
    assert step(memory, (0.0, 0.0))[0] == pytest.approx(expected, rel=1e-6)


def test_kernel_epsilon_option() -> None:
    """eps = 1e-4 (the appendix value): (1,0) vs {(0,0)}: K = 1e-4 / (0.992 + 1e-4)."""
    memory = EpisodicMemory(1, 2, capacity=10, kernel_epsilon=1e-4, distance_decay=1.0)
    step(memory, (0.0, 0.0))
    expected = 1.0 / (math.sqrt(1e-4 / 0.9921) + 1e-3)
    assert step(memory, (1.0, 0.0))[0] == pytest.approx(expected, rel=1e-6)


def test_full_memory_overwrites_oldest() -> None:
    memory = EpisodicMemory(1, 2, capacity=2, num_neighbors=10, distance_decay=1.0)
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
    """Per-env NGU episodic reward with Python loops (sorting), for comparison: one running
    mean per env, updated (and decayed) only on that env's steps with a non-empty memory."""

    def __init__(self, num_envs: int, capacity: int, k: int, decay: float) -> None:
        self.memories: list[deque[np.ndarray]] = [deque(maxlen=capacity) for _ in range(num_envs)]
        self.k = k
        self.decay = decay
        self.total = [0.0] * num_envs
        self.count = [0.0] * num_envs

    def step(self, q: np.ndarray) -> np.ndarray:
        out = np.zeros(len(self.memories))
        for b, memory in enumerate(self.memories):
            d = sorted(float(((m - q[b]) ** 2).sum()) for m in memory)[: self.k]
            if d:
                self.total[b] = self.decay * self.total[b] + sum(d)
                self.count[b] = self.decay * self.count[b] + len(d)
                mean = self.total[b] / self.count[b]
                kernel = sum(1e-3 / (max(x / mean - 0.008, 0.0) + 1e-3) for x in d)
                s = math.sqrt(kernel) + 1e-3
                out[b] = 1.0 / s if s <= 8.0 else 0.0
            memory.append(q[b].copy())
        return out

    def reset(self, mask: np.ndarray) -> None:
        for b in np.flatnonzero(mask):
            self.memories[b].clear()


@pytest.mark.parametrize("decay", [1.0, 0.9])
def test_batched_equals_per_env_reference(decay: float) -> None:
    rng = np.random.default_rng(0)
    num_envs, dim, capacity, k = 5, 3, 6, 3
    memory = EpisodicMemory(num_envs, dim, capacity=capacity, num_neighbors=k,
                            distance_decay=decay)
    reference = ReferenceMemory(num_envs, capacity, k, decay)
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
    np.testing.assert_allclose(memory.distance_mean,
                               np.array(reference.total) / np.array(reference.count), rtol=1e-9)


def test_exponential_running_mean_by_hand() -> None:
    """decay 0.5: sum <- 0.5 sum + sum_i d_i, count <- 0.5 count + n, d_m^2 = sum / count."""
    memory = EpisodicMemory(1, 2, capacity=10, num_neighbors=2, distance_decay=0.5)
    step(memory, (0.0, 0.0))  # empty memory: nothing to average, no decay either
    step(memory, (1.0, 0.0))  # d = [1]: sum 1, count 1
    assert memory.distance_mean.tolist() == [1.0]
    # (0,2): d = [4, 5]: sum = 0.5 + 9 = 9.5, count = 0.5 + 2 = 2.5, d_m^2 = 3.8
    # (cumulative: 10/3); d_n = [4/3.8, 5/3.8] - 0.008 = [1.0446316, 1.3077895];
    # K = 0.001 / (d_n + 0.001) = [0.00095636, 0.00076406]; s = sqrt(0.00172042) + 0.001
    # = 0.0424783; r = 23.54143.
    r = step(memory, (0.0, 2.0))
    assert memory.distance_mean[0] == pytest.approx(3.8, rel=1e-12)
    assert r[0] == pytest.approx(23.54143, rel=1e-5)


def test_running_mean_follows_a_shrinking_embedding() -> None:
    """The failure of a cumulative d_m^2 while f trains: after the embedding's scale shrinks
    100x, a new state looks like a revisit (K ~ 1 for its neighbour, reward ~ 1); the
    decayed mean forgets the old scale and tells new from revisited again."""
    rewards: dict[float, tuple[float, float]] = {}
    for decay in (1.0, 0.9):
        memory = EpisodicMemory(1, 1, capacity=400, num_neighbors=1, distance_decay=decay)
        for t in range(200):  # early embedding: visited points 1 apart
            step(memory, (float(t),))
        memory.reset(np.ones(1, dtype=bool))
        for t in range(200):  # the scale has shrunk 100x: points 0.01 apart
            step(memory, (0.01 * t,))
        new = float(step(memory, (2.0,))[0])  # next point on the new grid: d = 1e-4
        revisit = float(step(memory, (1.0,))[0])  # visited this episode: d = 0
        rewards[decay] = (new, revisit)
    # cumulative: d_m^2 ~ (199 + 199e-4) / 398 ~ 0.5, d_n = 2e-4 < xi -> K = 1, r = 1/1.001.
    assert rewards[1.0][0] == pytest.approx(1 / 1.001, rel=1e-5)
    # decay 0.9: d_m^2 = 1e-4 (the new scale), d_n = 1 - 0.008 -> K ~ 1e-3, r ~ 30.
    assert rewards[0.9][0] > 20.0
    assert rewards[1.0][1] == rewards[0.9][1] == pytest.approx(1 / 1.001, rel=1e-5)


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
    memory.compute_and_insert(np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 0.0]], np.float32))
    state = memory.state_tensors()
    assert state["distance_sum"].shape == (2,) and state["distance_sum"].dtype == torch.float64
    restored = EpisodicMemory(2, 3, capacity=4)
    restored.load_state_tensors(state)
    # env 0: d = |(1,1,1)|^2 = 3; env 1: d = |(2,0,0)|^2 = 4
    assert restored.distance_mean.tolist() == memory.distance_mean.tolist() == [3.0, 4.0]
    assert restored.distance_count.tolist() == [1.0, 1.0]
    assert restored.fill_counts.tolist() == [0, 0]
    with pytest.raises(ValueError, match="num_envs"):
        EpisodicMemory(3, 3, capacity=4).load_state_tensors(state)


def test_old_shared_scalar_state_is_converted() -> None:
    """A checkpoint from before the per-env means holds one scalar sum / count for all
    envs: each env starts from the shared mean with the count split evenly."""
    memory = EpisodicMemory(4, 1, capacity=8, num_neighbors=1)
    memory.load_state_tensors({"distance_sum": torch.tensor(60.0, dtype=torch.float64),
                               "distance_count": torch.tensor(20.0, dtype=torch.float64)})
    assert memory.distance_mean.tolist() == [3.0, 3.0, 3.0, 3.0]
    assert memory.distance_count.tolist() == [5.0, 5.0, 5.0, 5.0]
    assert memory.distance_sum.tolist() == [15.0, 15.0, 15.0, 15.0]
    # The next distances update each env from there: env b sees d = b^2 after inserting 0.
    memory.compute_and_insert(np.zeros((4, 1), np.float32))
    memory.compute_and_insert(np.array([[0.0], [1.0], [2.0], [3.0]], np.float32))
    np.testing.assert_allclose(memory.distance_mean,
                               [15 / 6, 16 / 6, 19 / 6, 24 / 6], rtol=1e-12)


def test_per_env_cumulative_mean_by_hand() -> None:
    """Default (cumulative, NGU): each env averages its own squared k-NN distances over all
    its steps, across episodes; an env with an empty memory leaves its mean alone."""
    memory = EpisodicMemory(2, 1, capacity=10, num_neighbors=2)
    assert memory.distance_decay == 1.0
    step(memory, (0.0,), (0.0,))  # both empty: nothing to average
    assert memory.distance_count.tolist() == [0.0, 0.0]
    # env 0: 2 vs {0}: d = [4]; env 1: 1 vs {0}: d = [1]
    step(memory, (2.0,), (1.0,))
    assert memory.distance_mean.tolist() == [4.0, 1.0]
    # env 0: 5 vs {0, 2}: d = [9, 25]; env 1: 1 vs {0, 1}: d = [0, 1]
    step(memory, (5.0,), (1.0,))
    # env 0: (4 + 9 + 25) / 3 = 38 / 3; env 1: (1 + 0 + 1) / 3 = 2 / 3
    np.testing.assert_allclose(memory.distance_mean, [38 / 3, 2 / 3], rtol=1e-12)
    memory.reset(np.array([True, False]))
    # env 0 empty: mean kept; env 1: 3 vs {0, 1, 1}: nearest 2: d = [4, 4]
    r = step(memory, (7.0,), (3.0,))
    np.testing.assert_allclose(memory.distance_mean, [38 / 3, 10 / 5], rtol=1e-12)
    assert memory.distance_count.tolist() == [3.0, 5.0]
    assert r[0] == 0.0
    # env 1's reward uses its own mean 2: d_n = 4 / 2 - 0.008 = 1.992, K = 0.001 / 1.993
    # twice; s = sqrt(0.002 / 1.993) + 0.001 = 0.0326780; r = 30.6016.
    assert r[1] == pytest.approx(1 / (math.sqrt(2e-3 / 1.993) + 1e-3), rel=1e-6)
    assert r[1] == pytest.approx(30.60162, rel=1e-5)


def idle_then_move(decay: float, idle_steps: int) -> float:
    """One env, D = 1, k = 10: an episode walking 0, 1, ..., 100, then an episode standing
    at 0 for ``idle_steps`` + 1 steps, then a step to 1. Returns that step's reward."""
    memory = EpisodicMemory(1, 1, capacity=1000, num_neighbors=10, distance_decay=decay)
    for t in range(101):
        step(memory, (float(t),))
    memory.reset(np.ones(1, dtype=bool))
    for _ in range(idle_steps + 1):
        step(memory, (0.0,))
    return float(step(memory, (1.0,))[0])


def episodic_reward(squared_distances: list[float], mean: float) -> float:
    kernel = sum(1e-3 / (max(d / mean - 0.008, 0.0) + 1e-3) for d in squared_distances)
    return 1.0 / (math.sqrt(kernel) + 1e-3)


def test_idle_then_move_bonus() -> None:
    """Moving after 500 idle steps: the cumulative mean (default) still normalises by the
    walking scale and pays ~4; a 0.99 window has forgotten it and pays ~24."""
    # Distances of the walk: step t (1..100) has min(t, 10) neighbours at 1, 4, ..., j^2.
    walk = [[float(j * j) for j in range(1, min(t, 10) + 1)] for t in range(1, 101)]
    # sum: t = 1..9 give 1 + 5 + 14 + 30 + 55 + 91 + 140 + 204 + 285 = 825, t = 10..100
    # give 91 * 385 = 35035; count: 45 + 910 = 955.
    assert sum(map(sum, walk)) == 35_860 and sum(map(len, walk)) == 955
    # Idle step i (1..500) has min(i, 10) neighbours at 0: count 45 + 491 * 10 = 4955.
    idle = [[0.0] * min(i, 10) for i in range(1, 501)]
    move = [1.0] * 10  # ten copies of 0, each at d = 1
    # Cumulative: d_m^2 = (35860 + 10) / (955 + 4955 + 10) = 35870 / 5920 = 6.05912;
    # d_n = 1 / 6.05912 - 0.008 = 0.157036; K = 0.001 / 0.158036 = 0.00632767 (x10);
    # s = sqrt(0.0632767) + 0.001 = 0.252549; r = 3.9596.
    cumulative = episodic_reward(move, 35_870 / 5_920)
    assert cumulative == pytest.approx(3.9596, rel=1e-4)
    assert idle_then_move(1.0, 500) == pytest.approx(cumulative, rel=1e-5)
    # Decay 0.99, run by hand over the same distance lists: the 500 zero-distance steps
    # drive d_m^2 from ~38 (the walk) down to ~0.17, so the move's d_n ~ 6: r ~ 24.
    total = count = 0.0
    for ds in [*walk, *idle, move]:
        total, count = 0.99 * total + sum(ds), 0.99 * count + len(ds)
    assert total / count == pytest.approx(0.17, abs=0.01)
    windowed = episodic_reward(move, total / count)
    assert 20.0 < windowed < 30.0
    assert idle_then_move(0.99, 500) == pytest.approx(windowed, rel=1e-5)
    # Without the idle stretch both modes pay about the same for the same move.
    assert idle_then_move(0.99, 0) == pytest.approx(idle_then_move(1.0, 0), rel=0.5)
