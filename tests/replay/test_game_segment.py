"""GameSegmentReplay: frames stored once, stacks as at acting time, windows, priorities."""

from __future__ import annotations

import numpy as np
import pytest

from rltransfer.replay import FrameStacker
from rltransfer.replay.game_segment import NOT_ENDED, GameSegmentReplay

FRAME = (2, 3, 3)
A = 3


def _frame(step: int, env: int) -> np.ndarray:
    """A frame that names its (step, env): all pixels equal to a distinct value."""
    return np.full(FRAME, (step * 7 + env * 3) % 250 + 1, dtype=np.uint8)


def _drive(replay: GameSegmentReplay, ends: list[dict[int, str]], num_steps: int,
           stacker: FrameStacker | None = None) -> list[np.ndarray]:
    """Run ``num_steps`` vector steps with NEXT_STEP autoreset; ``ends[i][t]`` is "term" or
    "trunc" when env ``i`` ends its episode at step ``t``. Returns the acting-time stacks."""
    b = replay.num_envs
    first = np.ones(b, dtype=bool)
    autoreset = np.zeros(b, dtype=bool)
    stacks = []
    for t in range(num_steps):
        obs = np.stack([_frame(t, i) for i in range(b)])
        if stacker is not None:
            stacks.append(stacker.push(obs, first))
        term = np.array([ends[i].get(t) == "term" for i in range(b)])
        trunc = np.array([ends[i].get(t) == "trunc" for i in range(b)])
        term &= ~autoreset
        trunc &= ~autoreset
        rewards = np.where(autoreset, 0.0, t + 0.5 + np.arange(b) * 100)
        actions = np.array([(t + i) % A for i in range(b)])
        pol = np.tile(np.eye(A)[t % A], (b, 1))
        replay.add(obs, actions, rewards, term, trunc, np.full(b, -float(t)), pol)
        first = autoreset
        autoreset = term | trunc
    return stacks


def test_frames_stored_once_and_stacks_match_acting_time() -> None:
    replay = GameSegmentReplay(2, 40, FRAME, A, frame_stack=3, unroll_steps=2, td_steps=2)
    stacker = FrameStacker(2, FRAME, 3)
    ends = [{4: "term", 11: "trunc"}, {1: "term"}]
    stacks = _drive(replay, ends, 20, stacker)
    assert replay.frames.shape == (2, 40, *FRAME)  # one frame per env step, no stacks stored
    per_step = int(np.prod(FRAME)) + 4 * 3 + 4 * A + 5
    tree = replay.tree.nbytes
    assert replay.nbytes == 2 * 40 * per_step + tree
    for t in range(20):
        got = replay.stacked_obs(np.array([0, 1]), np.array([t, t]))
        np.testing.assert_array_equal(got, stacks[t])
    # The stack right after env 0's autoreset (step 6 is the first of its episode 2) has zeros.
    s6 = replay.stacked_obs(np.array([0]), np.array([6]))[0]
    assert (s6[:4] == 0).all() and (s6[4:] == _frame(6, 0)[0]).all()


def test_sampleable_positions_need_written_windows_or_episode_end() -> None:
    replay = GameSegmentReplay(1, 50, FRAME, A, frame_stack=1, unroll_steps=2, td_steps=3)
    # Episode 0: steps 0..6, terminated at 6; step 7 autoreset; episode 1 starts at 8.
    _drive(replay, [{6: "term"}], 12)
    elig = set(replay.step_of_index(replay.eligible_indices()).tolist())
    # Episode 0 positions 0..6 are complete (final slot 7 stored); 7 is autoreset (never);
    # episode 1: t + 5 must be written (< 12), so only 8 qualifies... 8 + 5 = 13 > 11.
    assert elig == {0, 1, 2, 3, 4, 5, 6}
    replay2 = GameSegmentReplay(1, 50, FRAME, A, frame_stack=1, unroll_steps=2, td_steps=3)
    _drive(replay2, [{6: "term"}], 14)
    elig = set(replay2.step_of_index(replay2.eligible_indices()).tolist())
    assert elig == {0, 1, 2, 3, 4, 5, 6, 8}  # 8 + 5 = 13 is now written


def test_segment_window_rewards_end_and_age() -> None:
    replay = GameSegmentReplay(2, 50, FRAME, A, frame_stack=1, unroll_steps=2, td_steps=3)
    _drive(replay, [{6: "trunc"}, {}], 14)
    idx = np.array([0 * 50 + 4, 1 * 50 + 2])
    seg = replay.segment(idx)
    np.testing.assert_array_equal(seg.steps, [4, 2])
    # Env 0 from step 4: steps 4, 5, 6 in the episode (ends at offset 2 by truncation).
    assert seg.episode_end[0] == 2 and not seg.terminal[0]
    np.testing.assert_allclose(seg.rewards[0], [4.5, 5.5, 6.5, 0.0, 0.0])
    assert seg.episode_end[1] == NOT_ENDED and not seg.terminal[1]
    np.testing.assert_allclose(seg.rewards[1], [102.5, 103.5, 104.5, 105.5, 106.5])
    np.testing.assert_array_equal(seg.actions, [[(4 % A), (5 % A)], [(2 + 1) % A, (3 + 1) % A]])
    np.testing.assert_allclose(seg.root_values, [[-4, -5, -6], [-2, -3, -4]])
    np.testing.assert_allclose(seg.policies[0, 1], np.eye(A)[5 % A])
    np.testing.assert_array_equal(seg.age_env_steps, [(13 - 4) * 2, (13 - 2) * 2])
    with pytest.raises(ValueError, match="not sampleable"):
        replay.segment(np.array([7]))  # env 0's autoreset slot


def test_wraparound_drops_overwritten_positions() -> None:
    replay = GameSegmentReplay(1, 12, FRAME, A, frame_stack=2, unroll_steps=2, td_steps=2)
    _drive(replay, [{}], 30)
    steps = np.sort(replay.step_of_index(replay.eligible_indices()))
    # Stored steps 18..29; position 18's stack needs step 17 (overwritten); t + 4 <= 29.
    np.testing.assert_array_equal(steps, np.arange(19, 26))
    with pytest.raises(ValueError, match="stored"):
        replay.stacked_obs(np.array([0]), np.array([17]))


def test_prioritized_sampling_and_importance_weights() -> None:
    replay = GameSegmentReplay(1, 30, FRAME, A, frame_stack=1, unroll_steps=1, td_steps=1,
                               priority_exponent=0.5)
    _drive(replay, [{}], 6)  # positions 0..3 sampleable (t + 2 <= 5)
    idx = replay.eligible_indices()
    assert idx.tolist() == [0, 1, 2, 3]
    replay.update_priorities(idx, np.array([1.0, 4.0, 9.0, 16.0]))
    # p^alpha = 1, 2, 3, 4 -> P = 0.1, 0.2, 0.3, 0.4
    rng = np.random.default_rng(0)
    got, w = replay.sample(40_000, rng, importance_exponent=1.0)
    freq = np.bincount(got, minlength=4) / got.size
    np.testing.assert_allclose(freq, [0.1, 0.2, 0.3, 0.4], atol=0.01)
    # w_i = (N P_i)^-1 / max = (0.4/P_i)^-1... normalised by the largest (smallest P).
    expected = {0: 1.0, 1: 0.5, 2: 1 / 3, 3: 0.25}
    for i, wi in zip(got[:50], w[:50], strict=True):
        assert wi == pytest.approx(expected[int(i)], rel=1e-5)
    # New positions enter with the largest priority given so far (16).
    nxt = replay.num_added
    obs = np.stack([_frame(nxt, 0)])
    replay.add(obs, np.array([0]), np.array([0.0]), np.array([False]), np.array([False]),
               np.array([0.0]), np.ones((1, A)) / A)
    assert replay.tree.get(np.array([4]))[0] == pytest.approx(16.0**0.5)
    with pytest.raises(ValueError, match="finite"):
        replay.update_priorities(np.array([0]), np.array([np.nan]))


def test_state_tensors_roundtrip_and_mismatch() -> None:
    replay = GameSegmentReplay(2, 20, FRAME, A, frame_stack=2, unroll_steps=2, td_steps=2)
    _drive(replay, [{3: "term"}, {5: "trunc"}], 15)
    replay.update_priorities(replay.eligible_indices()[:3], np.array([0.5, 2.0, 3.0]))
    state = replay.state_tensors()
    other = GameSegmentReplay(2, 20, FRAME, A, frame_stack=2, unroll_steps=2, td_steps=2)
    other.load_state_tensors(state)
    assert other.num_added == 15 and len(other) == len(replay)
    np.testing.assert_array_equal(other.tree.leaves, replay.tree.leaves)
    a, _ = replay.sample(16, np.random.default_rng(3))
    b, _ = other.sample(16, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    wrong = GameSegmentReplay(2, 20, FRAME, A, frame_stack=2, unroll_steps=3, td_steps=2)
    with pytest.raises(ValueError, match="saved configuration"):
        wrong.load_state_tensors(state)


def test_begin_stream_closes_cut_episodes_as_truncated() -> None:
    replay = GameSegmentReplay(1, 40, FRAME, A, frame_stack=1, unroll_steps=1, td_steps=2)
    _drive(replay, [{}], 8)  # one episode, still running at step 7
    replay.begin_stream()
    assert not replay.valid[0, 7] and replay.truncated[0, 6]
    seg = replay.segment(np.array([5]))
    assert seg.episode_end[0] == 1 and not seg.terminal[0]  # bootstraps from step 7's frame
    # The stream restarts: the next step is the first of a new episode.
    obs = np.stack([_frame(8, 0)])
    replay.add(obs, np.array([1]), np.array([1.0]), np.array([False]), np.array([False]),
               np.array([0.0]), np.ones((1, A)) / A)
    assert replay.first[0, 8] and replay.valid[0, 8]


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least"):
        GameSegmentReplay(1, 5, FRAME, A, frame_stack=4, unroll_steps=5, td_steps=5)
    replay = GameSegmentReplay(1, 30, FRAME, A, frame_stack=1, unroll_steps=1, td_steps=1)
    with pytest.raises(ValueError, match="no sampleable"):
        replay.sample(4, np.random.default_rng(0))
    ok = dict(rewards=np.zeros(1), terminated=np.zeros(1, bool), truncated=np.zeros(1, bool),
              root_values=np.zeros(1), policies=np.ones((1, A)) / A)
    with pytest.raises(ValueError, match="uint8"):
        replay.add(np.zeros((1, *FRAME), np.float32), np.array([0]), **ok)
    with pytest.raises(ValueError, match="actions must be in"):
        replay.add(np.zeros((1, *FRAME), np.uint8), np.array([A]), **ok)
