"""SequenceReplay: cuts, overlap, burn-in, padding, stored states and n-step targets, by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rltransfer.replay import SequenceReplay


def _replay(**kw: Any) -> SequenceReplay:
    args: dict[str, Any] = dict(
        num_envs=1, capacity_per_env=40, frame_shape=(1, 1, 1), state_dim=2, sequence_length=4,
        burn_in=2, sequence_overlap=2, n_step=2, gamma=0.5,
    )
    args.update(kw)
    return SequenceReplay(**args)


def _add(r: SequenceReplay, t: int, *, term: bool = False, trunc: bool = False) -> None:
    """Step ``t``: frame value t, action t % 3, reward t + 1, state [t, -t]."""
    b = r.num_envs
    r.add(np.full((b, 1, 1, 1), t, np.uint8), np.full(b, t % 3), None, None,
          np.full(b, t + 1.0), np.full(b, term), np.full(b, trunc),
          core_state=np.tile(np.array([t, -t], np.float32), (b, 1)),
          extrinsic_reward=np.full(b, 10.0 * t), intrinsic_reward=np.full(b, 0.5 * t))


def _stream(r: SequenceReplay) -> None:
    # Episode A: steps 0..6, terminated at 6; step 7 is the autoreset slot (final obs);
    # episode B starts at step 8.
    for t in range(10):
        _add(r, t, term=(t == 6))


def _by_start(r: SequenceReplay) -> dict[int, int]:
    ids = r.eligible_indices()
    return {int(s): int(i) for s, i in zip(r.step_of_index(ids), ids, strict=True)}


def test_cuts_overlap_and_eligibility() -> None:
    r = _replay()
    _stream(r)
    # Training parts start every L - overlap = 2 steps of an episode: 0, 2, 4, 6 in A (6 is
    # complete because A ended); 8 in B is not complete (needs steps 8..11).
    assert sorted(_by_start(r)) == [0, 2, 4, 6]
    _add(r, 10)
    _add(r, 11)
    assert sorted(_by_start(r)) == [0, 2, 4, 6, 8]


def test_window_padding_prev_inputs_and_states() -> None:
    r = _replay()
    _stream(r)
    ids = _by_start(r)
    b = r.gather(np.array([ids[0], ids[4], ids[6]]))
    # u=0: window steps -2..3, the 2 burn-in steps are front padding.
    np.testing.assert_array_equal(b["in_episode"][0], [0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(b["obs"][0].reshape(-1), [0, 0, 0, 1, 2, 3])
    np.testing.assert_array_equal(b["prev_action"][0], [-1, -1, -1, 0, 1, 2])
    np.testing.assert_array_equal(b["prev_reward"][0], [0, 0, 0, 0, 10, 20])
    np.testing.assert_array_equal(b["prev_intrinsic_reward"][0], [0, 0, 0, 0, 0.5, 1.0])
    np.testing.assert_array_equal(b["core_state"][0], [0, 0])  # episode start: zeros
    # u=4: window 2..7 (7 = autoreset slot, in the episode but not a transition); the state
    # stored at step 2 (pos 2, (2 + burn_in) % 2 == 0).
    np.testing.assert_array_equal(b["in_episode"][1], [1] * 6)
    np.testing.assert_array_equal(b["valid"][1], [1, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(b["core_state"][1], [2, -2])
    np.testing.assert_array_equal(b["obs"][1].reshape(-1), [2, 3, 4, 5, 6, 7])
    # u=6: window 4..9; 8, 9 belong to episode B: end padding with zero frames.
    np.testing.assert_array_equal(b["in_episode"][2], [1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(b["obs"][2].reshape(-1), [4, 5, 6, 7, 0, 0])
    np.testing.assert_array_equal(b["prev_action"][2], [0, 1, 2, 0, -1, -1])
    np.testing.assert_array_equal(b["core_state"][2], [4, -4])


def test_n_step_targets_inside_sequences_by_hand() -> None:
    r = _replay()
    _stream(r)
    ids = _by_start(r)
    b = r.gather(np.array([ids[2], ids[4], ids[6]]))
    # gamma 0.5, n 2, reward of step t is t + 1. Window indices 2..5 are the training part.
    # u=2 (window 0..5): step 2: 3 + .5*4 = 5, bootstrap index 4 (step 4), disc .25;
    # step 3: 4 + .5*5 = 6.5, index 5; steps 4, 5 would bootstrap outside the window.
    np.testing.assert_array_equal(b["loss_mask"][0], [0, 0, 1, 1, 0, 0])
    np.testing.assert_allclose(b["n_step_return"][0, 2:4], [5.0, 6.5])
    np.testing.assert_allclose(b["bootstrap_discount"][0, 2:4], [0.25, 0.25])
    np.testing.assert_array_equal(b["bootstrap_index"][0, 2:4], [4, 5])
    # u=4 (window 2..7): step 4: 5 + .5*6 = 8, index 4 (step 6), disc .25; step 5:
    # 6 + .5*7 = 9.5 ending in the termination at 6 (disc 0); step 6: 7, disc 0.
    np.testing.assert_array_equal(b["loss_mask"][1], [0, 0, 1, 1, 1, 0])
    np.testing.assert_allclose(b["n_step_return"][1, 2:5], [8.0, 9.5, 7.0])
    np.testing.assert_allclose(b["bootstrap_discount"][1, 2:5], [0.25, 0.0, 0.0])
    np.testing.assert_array_equal(b["bootstrap_index"][1, 2], 4)
    # u=6 (window 4..9): only step 6 (terminated) trains.
    np.testing.assert_array_equal(b["loss_mask"][2], [0, 0, 1, 0, 0, 0])
    np.testing.assert_allclose(b["n_step_return"][2, 2], 7.0)


def test_truncation_bootstraps_from_the_final_observation() -> None:
    r = _replay(burn_in=0, sequence_length=5, sequence_overlap=1, n_step=3)
    for t in range(7):
        _add(r, t, trunc=(t == 3))  # episode 0..3 truncated; slot 4 = final obs
    ids = _by_start(r)
    b = r.gather(np.array([ids[0]]))  # window 0..4
    np.testing.assert_array_equal(b["in_episode"][0], [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(b["loss_mask"][0], [1, 1, 1, 1, 0])
    # step 2: r2 + .5 r3 = 3 + 2 = 5, truncation at 3 -> bootstrap at slot 4, gamma^2.
    np.testing.assert_allclose(b["n_step_return"][0], [1 + 1 + 0.75, 2 + 1.5 + 1, 5, 4, 0])
    np.testing.assert_allclose(b["bootstrap_discount"][0], [0.125, 0.125, 0.25, 0.5, 0])
    np.testing.assert_array_equal(b["bootstrap_index"][0], [3, 4, 4, 4, 4])


def test_frame_stack_zeroes_frames_before_the_episode() -> None:
    r = _replay(frame_stack=2)
    _stream(r)
    _add(r, 10)
    _add(r, 11)
    b = r.gather(np.array([_by_start(r)[8]]))  # window 6..11, episode B from 8
    stacks = b["obs"][0].reshape(6, 2)
    np.testing.assert_array_equal(stacks[2:], [[0, 8], [8, 9], [9, 10], [10, 11]])
    np.testing.assert_array_equal(stacks[:2], 0)  # steps 6, 7: other episode


def test_overwritten_sequences_are_dropped_and_samples_are_consistent() -> None:
    r = _replay(num_envs=2, capacity_per_env=9, state_dim=0)
    rng = np.random.default_rng(0)
    for t in range(60):
        done = rng.random(2) < 0.15
        r.add(np.full((2, 1, 1, 1), t % 256, np.uint8), np.zeros(2, int), None, None,
              np.ones(2), done, np.zeros(2, bool))
        if r.can_sample():
            b = r.sample(8, rng)
            steps = r.step_of_index(b["indices"])
            w = steps[:, None] - 2 + np.arange(6)[None, :]
            got = b["obs"].reshape(8, 6)
            # Every in-episode frame is the one written at that step (nothing stale).
            assert np.all(np.where(b["in_episode"], got == w % 256, True))
            assert np.all(w[b["in_episode"]] > r.num_added - 1 - r.capacity_per_env)


def test_begin_stream_closes_a_cut_episode_as_truncated() -> None:
    r = _replay(burn_in=0, sequence_length=4, sequence_overlap=0, n_step=1)
    for t in range(3):
        _add(r, t)
    assert not r.can_sample()
    r.begin_stream()  # episode 0..2 cut: step 1 truncated, slot 2 its bootstrap
    b = r.gather(np.array([_by_start(r)[0]]))
    np.testing.assert_array_equal(b["loss_mask"][0], [1, 1, 0, 0])
    np.testing.assert_allclose(b["bootstrap_discount"][0, :2], [0.5, 0.5])
    _add(r, 3)
    assert r.first[0, 3 % r.capacity_per_env]


def test_priorities_and_checkpoint_roundtrip() -> None:
    r = _replay()
    _stream(r)
    ids = _by_start(r)
    r.update_priorities(np.array([ids[0], ids[2]]), np.array([100.0, 0.0]))
    rng = np.random.default_rng(1)
    counts = np.bincount(r.sample(2000, rng)["indices"], minlength=r.eligible.size)
    assert counts[ids[0]] > 1500 and counts[ids[2]] == 0
    other = _replay()
    other.load_state_tensors(r.state_tensors())
    a = r.gather(np.array(list(ids.values())))
    c = other.gather(np.array(list(ids.values())))
    for key in a:
        np.testing.assert_array_equal(a[key], c[key])
    with pytest.raises(ValueError, match="saved with config_int"):
        _replay(sequence_length=6, capacity_per_env=40).load_state_tensors(r.state_tensors())


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="capacity_per_env"):
        _replay(capacity_per_env=5)
    with pytest.raises(ValueError, match="exceed n_step"):
        _replay(sequence_length=2, sequence_overlap=1)
    r = _replay()
    with pytest.raises(ValueError, match="core_state"):
        r.add(np.zeros((1, 1, 1, 1), np.uint8), np.zeros(1, int), None, None, np.zeros(1),
              np.zeros(1, bool), np.zeros(1, bool))
    with pytest.raises(ValueError, match="no sampleable sequence"):
        r.sample(1, np.random.default_rng(0))
