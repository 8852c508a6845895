"""The frame-once ring base (:class:`~rltransfer.replay.ring.SlotRing`) and the checkpoints
of the replays built on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rltransfer.replay.ring import SlotRing
from tests.replay.legacy_fixture import KINDS, build, drive, sample

LEGACY = Path(__file__).parent / "data" / "legacy_replays.npz"


class _EveryValidSlot(SlotRing):
    """Minimal ring: every non-autoreset slot is an item, sampleable once written; it keeps
    one counter array to check the checkpoint naming of private extras."""

    _item = "slot"

    def __init__(self, num_envs: int, capacity: int, *, reach: int = 1,
                 prioritized: bool = True, alpha: float = 1.0) -> None:
        super().__init__(num_envs, capacity, (1, 1, 1), frame_stack=reach,
                         prioritized=prioritized, priority_exponent=alpha, min_priority=1e-6,
                         overwrite_reach=reach)
        self._counter = np.zeros(num_envs, dtype=np.int64)

    def _extra_state(self) -> tuple[str, ...]:
        return ("_counter",)

    def _config_int(self) -> np.ndarray:
        return np.array([self.num_envs, self.capacity_per_env], dtype=np.int64)

    def _config_float(self) -> np.ndarray:
        return np.array([self.priority_exponent], dtype=np.float64)

    def add(self, value: int, term: bool = False, trunc: bool = False) -> None:
        b = self.num_envs
        obs = np.full((b, 1, 1, 1), value, dtype=np.uint8)
        t, _, _ = self._append(obs, np.full(b, term), np.full(b, trunc))
        self._counter += 1
        self._refresh_recent(t)

    def _refresh_recent(self, last: int) -> None:
        c = self.capacity_per_env
        envs = np.arange(self.num_envs)
        self._set_eligible(envs * c + last % c, self.valid[:, last % c].copy())


def _eligible_steps(ring: SlotRing) -> list[int]:
    return sorted(int(s) for s in ring.step_of_index(ring.eligible_indices()))


def test_cursor_wraps_and_overwrite_reach_clears_items() -> None:
    ring = _EveryValidSlot(1, 4, reach=2)
    for v in range(6):  # steps 0..5 into slots 0,1,2,3,0,1
        ring.add(10 + v)
    assert ring.frames[0, :, 0, 0, 0].tolist() == [14, 15, 12, 13]
    assert ring.step_of_index(np.arange(4)).tolist() == [4, 5, 2, 3]
    # Writing step 5 (slot 1) cleared steps 1 and 2 (reach 2 from the overwritten step 1).
    assert _eligible_steps(ring) == [3, 4, 5]
    assert len(ring) == 3 and ring.tree.total == pytest.approx(3.0)


def test_stream_flags_autoreset_and_begin_stream() -> None:
    ring = _EveryValidSlot(1, 8)
    ring.add(1)
    ring.add(2, trunc=True)
    ring.add(3)  # autoreset slot: final observation of the truncated episode
    ring.add(4)  # first step of the next episode
    ring.add(5)
    assert ring.valid[0, :5].tolist() == [True, True, False, True, True]
    assert ring.first[0, :5].tolist() == [True, False, False, True, False]
    assert ring.truncated[0, :5].tolist() == [False, True, False, False, False]
    assert _eligible_steps(ring) == [0, 1, 3, 4]
    ring.begin_stream()  # cuts the episode of steps 3, 4: step 4 becomes its final frame
    assert ring.valid[0, 4] == np.False_ and ring.truncated[0, 3] == np.True_
    assert _eligible_steps(ring) == [0, 1, 3]
    ring.add(6)
    assert ring.first[0, 5] == np.True_ and ring.valid[0, 5] == np.True_


class _KeepTruncatedEnd(_EveryValidSlot):
    _cut_truncated_end = False  # as GameSegmentReplay


def test_begin_stream_after_a_truncation_at_the_last_step() -> None:
    cut, keep = _EveryValidSlot(1, 8), _KeepTruncatedEnd(1, 8)
    for ring in (cut, keep):
        ring.add(1)
        ring.add(2)
        ring.add(3, trunc=True)  # its final observation never comes
        ring.begin_stream()
    # Transition / sequence replays: the truncated step becomes the final frame of an
    # episode truncated one step earlier.
    assert cut.valid[0, :3].tolist() == [True, True, False]
    assert cut.truncated[0, :3].tolist() == [False, True, False]
    assert _eligible_steps(cut) == [0, 1]
    # Game segments: the episode keeps its end flag.
    assert keep.valid[0, :3].tolist() == [True, True, True]
    assert keep.truncated[0, :3].tolist() == [False, False, True]
    assert _eligible_steps(keep) == [0, 1, 2]
    for ring in (cut, keep):
        ring.add(4)
        assert ring.first[0, 3] == np.True_ and ring.valid[0, 3] == np.True_


def test_prioritized_draw_weights_by_hand() -> None:
    ring = _EveryValidSlot(1, 4, alpha=0.5)
    for v in range(4):
        ring.add(v)
    ring.update_priorities(np.array([0, 1, 2, 3]), np.array([1.0, 4.0, 9.0, 16.0]))
    # Leaves p^0.5 = 1, 2, 3, 4 (total 10); the max priority seen is 16.
    assert ring.tree.leaves.tolist() == [1.0, 2.0, 3.0, 4.0]
    assert ring.max_priority == 16.0
    flat, w = ring._draw(200, np.random.default_rng(0), 1.0, "")
    # w_i = (N P_i)^-1 / max over the batch: leaf 0 (P = 0.1) has the largest weight, 1.
    n_p = {0: 0.4, 1: 0.8, 2: 1.2, 3: 1.6}
    largest = max(1 / n_p[int(i)] for i in flat)
    expected = np.array([(1 / n_p[int(i)]) / largest for i in flat], dtype=np.float32)
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    counts = np.bincount(flat, minlength=4) / 200
    np.testing.assert_allclose(counts, [0.1, 0.2, 0.3, 0.4], atol=0.09)
    ring.add(7)  # overwrites step 0 (slot 0): a new item gets max priority 16^0.5 = 4
    assert ring.tree.leaves.tolist() == [4.0, 2.0, 3.0, 4.0]


def test_uniform_ring_has_unit_leaves_and_weights() -> None:
    ring = _EveryValidSlot(2, 4, prioritized=False)
    for v in range(3):
        ring.add(v)
    ring.update_priorities(np.array([0, 5]), np.array([3.0, 0.5]))  # a no-op
    assert ring.tree.leaves.tolist() == [1, 1, 1, 0, 1, 1, 1, 0]
    flat, w = ring._draw(16, np.random.default_rng(1), 0.6, "")
    assert np.all(w == 1.0) and set(flat.tolist()) <= {0, 1, 2, 4, 5, 6}
    with pytest.raises(ValueError, match="batch_size"):
        ring._draw(0, np.random.default_rng(1), 0.6, "")
    with pytest.raises(ValueError, match="no sampleable slot yet"):
        _EveryValidSlot(1, 4)._draw(1, np.random.default_rng(1), 0.6, "x")


def test_ring_state_round_trip_names_private_extras_without_underscore() -> None:
    ring = _EveryValidSlot(1, 4, alpha=0.5)
    for v in range(5):
        ring.add(v, term=v == 2)
    ring.update_priorities(np.array([1]), np.array([9.0]))
    state = ring.state_tensors()
    assert set(state) == {"frames", "terminated", "truncated", "valid", "first", "eligible",
                          "counter", "priorities", "num_added", "max_priority", "prev_done",
                          "prev_autoreset", "config_int", "config_float"}
    other = _EveryValidSlot(1, 4, alpha=0.5)
    other.load_state_tensors(state)
    assert other._counter.tolist() == [5] and other.num_added == 5
    assert other.tree.leaves.tolist() == ring.tree.leaves.tolist() == [1.0, 3.0, 1.0, 0.0]
    assert _eligible_steps(other) == _eligible_steps(ring) == [1, 2, 4]
    with pytest.raises(ValueError, match="saved with config_float"):
        _EveryValidSlot(1, 4, alpha=0.9).load_state_tensors(state)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoints_written_before_the_ring_base_load_and_sample_the_same(kind: str) -> None:
    """``legacy_replays.npz`` (see tests/replay/legacy_fixture.py): state and samples from the
    replays of e36aa18. The same format comes out, and a loaded replay samples what the old
    one sampled, before and after three more steps."""
    data = np.load(LEGACY)

    def part(prefix: str) -> dict[str, np.ndarray]:
        p = f"{kind}/{prefix}/"
        return {k[len(p):]: data[k] for k in data.files if k.startswith(p)}

    saved = part("state")
    replay = build(kind)
    replay.load_state_tensors(saved)
    now = replay.state_tensors()
    assert set(now) == set(saved)
    for k, v in saved.items():
        assert now[k].dtype == v.dtype and np.array_equal(now[k], v), k
    rng = np.random.default_rng(3)
    for prefix in ("after_load", "after_add"):
        if prefix == "after_add":
            drive(replay, kind, np.random.default_rng(12), 3)
        want, got = part(prefix), sample(replay, kind, rng, 5)
        assert set(got) == set(want)
        for k, v in want.items():
            assert np.asarray(got[k]).dtype == v.dtype, (prefix, k)
            np.testing.assert_array_equal(got[k], v, err_msg=f"{prefix}/{k}")
