from __future__ import annotations

import io

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from rltransfer.replay import FrameStacker, TransitionReplay

GAMMA = 0.5


def _frame(value: int, num_envs: int) -> np.ndarray:
    return np.full((num_envs, 1, 1, 1), value, dtype=np.uint8)


def _hand_stream() -> TransitionReplay:
    """2 envs, n=3, gamma=0.5, frames hold 50*env + step.

    env0: termination at step 2 (autoreset 3), truncation at 6 (autoreset 7), truncation at
    the last step 9; extra action chosen at step 4. env1: reward 1 every step, terminates at 9.
    """
    rb = TransitionReplay(2, 20, (1, 1, 1), frame_stack=1, n_step=3, gamma=GAMMA,
                          prioritized=False)
    r0 = [1, 2, 4, 0, 1, 2, 4, 0, 1, 2]
    term0 = {2}
    trunc0 = {6, 9}
    for t in range(10):
        obs = np.array([t, 50 + t], dtype=np.uint8).reshape(2, 1, 1, 1)
        action = np.array([t % 3, 1])
        agent_action = np.array([5 if t == 4 else t % 3, 1])
        extra = np.array([t == 4, False])
        reward = np.array([r0[t], 1.0], dtype=np.float32)
        term = np.array([t in term0, t == 9])
        trunc = np.array([t in trunc0, False])
        rb.add(obs, action, agent_action, extra, reward, term, trunc)
    return rb


def _by_step(rb: TransitionReplay, env: int) -> dict[int, dict[str, np.ndarray]]:
    idx = rb.eligible_indices()
    idx = idx[idx // rb.capacity_per_env == env]
    batch = rb.gather(idx)
    steps = rb.step_of_index(idx)
    return {int(s): {k: v[i] for k, v in batch.items()} for i, s in enumerate(steps)}


def test_hand_stream_n_step_returns_discounts_and_bootstrap() -> None:
    rb = _hand_stream()
    env0 = _by_step(rb, 0)
    assert sorted(env0) == [0, 1, 2, 4, 5, 6]  # 3, 7 autoreset; 8, 9 wait for slot 10
    expected0 = {  # step: (return, discount, bootstrap frame)
        0: (1 + 0.5 * 2 + 0.25 * 4, 0.0, 3),
        1: (2 + 0.5 * 4, 0.0, 3),
        2: (4.0, 0.0, 3),
        4: (1 + 0.5 * 2 + 0.25 * 4, 0.125, 7),  # truncated at 6: bootstrap = final obs (7)
        5: (2 + 0.5 * 4, 0.25, 7),
        6: (4.0, 0.5, 7),
    }
    for t, (ret, disc, boot) in expected0.items():
        tr = env0[t]
        assert tr["n_step_return"] == pytest.approx(ret), t
        assert tr["bootstrap_discount"] == pytest.approx(disc), t
        assert tr["obs"].item() == t
        assert tr["next_obs"].item() == boot
        assert tr["action"] == t % 3
    assert env0[4]["extra"] and env0[4]["agent_action"] == 5 and env0[4]["action"] == 1
    assert not env0[5]["extra"] and env0[5]["agent_action"] == env0[5]["action"]

    env1 = _by_step(rb, 1)
    assert sorted(env1) == list(range(10))
    for t in range(7):
        assert env1[t]["n_step_return"] == pytest.approx(1.75)
        assert env1[t]["bootstrap_discount"] == pytest.approx(0.125)
        assert env1[t]["next_obs"].item() == 50 + t + 3
    for t, ret in ((7, 1.75), (8, 1.5), (9, 1.0)):  # ends in the written termination at 9
        assert env1[t]["n_step_return"] == pytest.approx(ret)
        assert env1[t]["bootstrap_discount"] == 0.0
        assert env1[t]["next_obs"].item() == 0  # final frame not stored yet: zeros

    # The autoreset step 10 stores env0's final obs of the truncated episode.
    rb.add(_frame(10, 2), np.zeros(2, np.int64), None, None, np.zeros(2), np.zeros(2, bool),
           np.zeros(2, bool))
    env0 = _by_step(rb, 0)
    assert sorted(env0) == [0, 1, 2, 4, 5, 6, 8, 9]
    assert env0[8]["n_step_return"] == pytest.approx(1 + 0.5 * 2)
    assert env0[8]["bootstrap_discount"] == pytest.approx(0.25)
    assert env0[9]["bootstrap_discount"] == pytest.approx(0.5)
    assert env0[8]["next_obs"].item() == 10
    assert 10 not in _by_step(rb, 1)  # autoreset slot of env1


def test_sample_keys_dtypes_and_shapes() -> None:
    rb = _hand_stream()
    batch = rb.sample(16, np.random.default_rng(0))
    dtypes = {
        "obs": np.uint8, "next_obs": np.uint8, "action": np.int64, "agent_action": np.int64,
        "extra": np.bool_, "n_step_return": np.float32, "bootstrap_discount": np.float32,
        "weights": np.float32, "indices": np.int64, "reward": np.float32,
    }
    for key, dt in dtypes.items():
        assert batch[key].dtype == dt, key
        assert batch[key].shape[0] == 16
    assert batch["obs"].shape == (16, 1, 1, 1)
    np.testing.assert_array_equal(batch["weights"], 1.0)
    assert set(batch["indices"].tolist()) <= set(rb.eligible_indices().tolist())


def _random_stream(rb: TransitionReplay, stacker: FrameStacker, steps: int, seed: int):
    """Drive replay and stacker like the collector; return per-step records."""
    rng = np.random.default_rng(seed)
    b = rb.num_envs
    first = np.ones(b, bool)
    autoreset = np.zeros(b, bool)
    records = []
    for _ in range(steps):
        obs = rng.integers(1, 256, size=(b, *rb.frame_shape), dtype=np.uint8)
        stacked = stacker.push(obs, first)
        reward = rng.normal(size=b).astype(np.float32)
        term = (rng.random(b) < 0.12) & ~autoreset
        trunc = (rng.random(b) < 0.08) & ~autoreset & ~term
        reward[autoreset] = 0.0
        rb.add(obs, rng.integers(0, 4, b), None, None, reward, term, trunc)
        records.append(dict(stacked=stacked, reward=reward, term=term, trunc=trunc,
                            autoreset=autoreset.copy()))
        first = autoreset
        autoreset = term | trunc
    return records


@pytest.mark.parametrize("prioritized", [True, False])
def test_fused_eligibility_refresh_matches_numpy_path(prioritized: bool) -> None:
    # Same eligibility, sum tree (bit for bit) and count after every add, with episode ends,
    # wrap-around and priorities updated between adds.
    def make() -> TransitionReplay:
        return TransitionReplay(3, 17, (1, 2, 2), frame_stack=2, n_step=4,
                                prioritized=prioritized)

    fused, ref = make(), make()
    ref._fused_refresh = False
    rng = np.random.default_rng(5)
    streams = [np.random.default_rng(7), np.random.default_rng(7)]
    for t in range(80):
        for rb, srng in zip((fused, ref), streams, strict=True):
            obs = srng.integers(1, 256, size=(3, 1, 2, 2), dtype=np.uint8)
            term, trunc = srng.random(3) < 0.12, srng.random(3) < 0.08
            rb.add(obs, srng.integers(0, 4, 3), None, None, srng.normal(size=3), term, trunc)
        if t % 5 == 4 and fused.can_sample():
            idx = fused.eligible_indices()[:6]
            prio = rng.random(idx.shape[0]) * 3
            fused.update_priorities(idx, prio)
            ref.update_priorities(idx, prio)
        np.testing.assert_array_equal(fused.eligible, ref.eligible)
        np.testing.assert_array_equal(fused.tree.nodes, ref.tree.nodes)
        assert fused.num_eligible == ref.num_eligible


def _reference(records, env: int, t: int, n: int, gamma: float, num_added: int):
    """Brute-force n-step window of (env, t), or None if not sampleable."""
    if records[t]["autoreset"][env]:
        return None
    ret, m = 0.0, 0
    for k in range(n):
        if t + k >= num_added:
            return None
        rec = records[t + k]
        ret += gamma**k * float(rec["reward"][env])
        m = k + 1
        if rec["term"][env]:
            return ret, 0.0, m
        if rec["trunc"][env]:
            break
    if t + m >= num_added:
        return None
    return ret, gamma**m, m


@pytest.mark.parametrize("frame_stack, capacity", [(1, 200), (3, 200), (4, 17)])
def test_frame_stacks_and_returns_match_stacker_and_reference(frame_stack, capacity) -> None:
    b, n, gamma, steps = 3, 4, 0.9, 60
    rb = TransitionReplay(b, capacity, (2, 3, 3), frame_stack=frame_stack, n_step=n,
                          gamma=gamma, prioritized=True)
    stacker = FrameStacker(b, (2, 3, 3), frame_stack)
    records = _random_stream(rb, stacker, steps, seed=frame_stack)
    idx = rb.eligible_indices()
    batch = rb.gather(idx)
    steps_of = rb.step_of_index(idx)
    envs = idx // capacity
    got = {(int(e), int(s)) for e, s in zip(envs, steps_of, strict=True)}
    oldest = max(0, steps - capacity + frame_stack - 1)  # stacks must not reach overwritten
    want = {
        (e, t) for e in range(b) for t in range(oldest, steps)
        if _reference(records, e, t, n, gamma, steps) is not None
    }
    assert got == want
    assert len(rb) == len(want)
    for i, (e, t) in enumerate(zip(envs, steps_of, strict=True)):
        ref = _reference(records, e, t, n, gamma, steps)
        assert ref is not None
        ret, disc, m = ref
        assert batch["n_step_return"][i] == pytest.approx(ret, rel=1e-5, abs=1e-6)
        assert batch["bootstrap_discount"][i] == pytest.approx(disc, rel=1e-6)
        np.testing.assert_array_equal(batch["obs"][i], records[t]["stacked"][e])
        if disc > 0:
            np.testing.assert_array_equal(batch["next_obs"][i], records[t + m]["stacked"][e])
    if frame_stack > 1:  # the zero padding at episode starts was actually exercised
        starts = [r["stacked"][e, :2] for r in records for e in range(b)]
        assert any(not s.any() for s in starts)


def test_frame_stacker_hand_example() -> None:
    st = FrameStacker(1, (1, 1, 1), 3)
    out = [st.push(_frame(v, 1), np.array([f])).reshape(-1).tolist()
           for v, f in ((1, True), (2, False), (3, False), (4, True), (5, False))]
    assert out == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [0, 0, 4], [0, 4, 5]]
    with pytest.raises(ValueError, match="uint8"):
        st.push(np.zeros((1, 1, 1, 1), np.float32), np.array([False]))


def test_begin_stream_closes_cut_episodes_as_truncated() -> None:
    ones, no = np.ones(2, np.float32), np.zeros(2, bool)
    rb = TransitionReplay(2, 30, (1, 1, 1), frame_stack=2, n_step=3, gamma=GAMMA,
                          prioritized=False)
    for t in range(5):
        rb.add(_frame(t + 1, 2), np.zeros(2, np.int64), None, None, ones,
               np.array([False, t == 4]), no)  # env1 terminates at its last step
    assert sorted(_by_step(rb, 0)) == [0, 1]
    rb.begin_stream()
    env0 = _by_step(rb, 0)
    assert sorted(env0) == [0, 1, 2, 3]  # step 4 lost its successor: not sampleable
    assert env0[1]["n_step_return"] == pytest.approx(1.75)
    assert env0[1]["bootstrap_discount"] == pytest.approx(0.125)
    assert env0[1]["next_obs"].reshape(-1).tolist() == [4, 5]  # frames of steps 3, 4
    assert env0[3]["bootstrap_discount"] == pytest.approx(0.5)
    env1 = _by_step(rb, 1)
    assert sorted(env1) == [0, 1, 2, 3, 4]  # termination kept
    assert env1[4]["bootstrap_discount"] == 0.0
    rb.add(_frame(9, 2), np.zeros(2, np.int64), None, None, ones, no, no)
    rb.add(_frame(10, 2), np.zeros(2, np.int64), None, None, ones, no, no)
    rb.add(_frame(11, 2), np.zeros(2, np.int64), None, None, ones, no, no)
    rb.add(_frame(12, 2), np.zeros(2, np.int64), None, None, ones, no, no)
    env0 = _by_step(rb, 0)
    assert env0[5]["obs"].reshape(-1).tolist() == [0, 9]  # new episode: zero padding
    assert env0[5]["bootstrap_discount"] == pytest.approx(0.125)


def test_prioritized_sampling_matches_priorities_power_alpha() -> None:
    alpha, beta = 0.9, 0.6
    rb = TransitionReplay(2, 50, (1, 2, 2), frame_stack=1, n_step=1, gamma=0.99,
                          priority_exponent=alpha, importance_exponent=beta)
    no = np.zeros(2, bool)
    for t in range(20):
        rb.add(np.full((2, 1, 2, 2), t, np.uint8), np.zeros(2, np.int64), None, None,
               np.ones(2), no, no)
    idx = rb.eligible_indices()
    assert idx.size == 38  # steps 0..18 of both envs
    rng = np.random.default_rng(123)
    prio = rng.uniform(0.1, 3.0, size=idx.size)
    rb.update_priorities(idx, prio)
    expected = prio**alpha / np.sum(prio**alpha)
    num = 40_000
    batch = rb.sample(num, np.random.default_rng(7))
    pos = np.searchsorted(idx, batch["indices"])
    assert np.all(idx[pos] == batch["indices"])
    counts = np.bincount(pos, minlength=idx.size)
    chi2 = np.sum((counts - num * expected) ** 2 / (num * expected))
    assert chi2 < 80.0  # df = 37: mean 37, sd 8.6
    # A wrong exponent (alpha = 1, i.e. priorities used raw) must be rejected by this test.
    raw = prio / prio.sum()
    assert np.sum((counts - num * raw) ** 2 / (num * raw)) > 80.0
    # Importance weights: (N P(i))^-beta normalised by the batch max.
    w = (idx.size * expected[pos]) ** (-beta)
    np.testing.assert_allclose(batch["weights"], w / w.max(), rtol=1e-5)


def test_uniform_sampling_is_uniform_and_ignores_priorities() -> None:
    rb = TransitionReplay(1, 50, (1, 1, 1), n_step=1, prioritized=False)
    no = np.zeros(1, bool)
    for t in range(11):
        rb.add(_frame(t, 1), np.zeros(1, np.int64), None, None, np.ones(1), no, no)
    idx = rb.eligible_indices()
    rb.update_priorities(idx, np.arange(idx.size, dtype=float))
    batch = rb.sample(20_000, np.random.default_rng(1))
    counts = np.bincount(np.searchsorted(idx, batch["indices"]), minlength=idx.size)
    exp = 20_000 / idx.size
    assert np.sum((counts - exp) ** 2 / exp) < 35.0  # df = 9
    np.testing.assert_array_equal(batch["weights"], 1.0)


def test_new_transitions_get_max_priority_and_stale_updates_are_ignored() -> None:
    alpha = 0.9
    rb = TransitionReplay(1, 8, (1, 1, 1), n_step=1, priority_exponent=alpha)
    no = np.zeros(1, bool)

    def add(t: int) -> None:
        rb.add(_frame(t, 1), np.zeros(1, np.int64), None, None, np.ones(1), no, no)

    for t in range(4):
        add(t)
    idx = rb.eligible_indices()
    np.testing.assert_allclose(rb.tree.get(idx), 1.0)
    rb.update_priorities(idx, np.array([0.5, 2.5, 0.0]))
    np.testing.assert_allclose(rb.tree.get(idx), [0.5**alpha, 2.5**alpha, 1e-6**alpha])
    add(4)
    assert rb.tree.get(np.array([3]))[0] == pytest.approx(2.5**alpha)
    for t in range(5, 12):  # wrap: slot 0 now holds a newer step
        add(t)
    stale = np.array([11 % 8])  # the slot just written (step 11): not sampleable yet
    assert stale[0] not in rb.eligible_indices()
    rb.update_priorities(stale, np.array([100.0]))
    assert rb.tree.get(stale)[0] == 0.0
    with pytest.raises(ValueError, match="finite"):
        rb.update_priorities(idx[:1], np.array([np.nan]))
    with pytest.raises(ValueError, match="indices"):
        rb.update_priorities(idx[:2], np.array([1.0]))


def test_state_round_trip_through_safetensors() -> None:
    def build() -> TransitionReplay:
        return TransitionReplay(2, 12, (1, 2, 2), frame_stack=2, n_step=3, gamma=0.9)

    rb = build()
    records = _random_stream(rb, FrameStacker(2, (1, 2, 2), 2), 30, seed=3)
    assert records
    first = rb.sample(8, np.random.default_rng(0))
    rb.update_priorities(first["indices"], np.linspace(0.1, 4.0, 8))
    blob = st_save(rb.state_tensors())
    restored = build()
    restored.load_state_tensors(st_load(io.BytesIO(blob).read()))
    a = rb.sample(32, np.random.default_rng(5))
    b = restored.sample(32, np.random.default_rng(5))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert restored.max_priority == rb.max_priority
    # Both continue identically (episode tracking restored too).
    _random_stream(rb, FrameStacker(2, (1, 2, 2), 2), 7, seed=9)
    _random_stream(restored, FrameStacker(2, (1, 2, 2), 2), 7, seed=9)
    np.testing.assert_array_equal(rb.eligible_indices(), restored.eligible_indices())
    a = rb.sample(32, np.random.default_rng(6))
    b = restored.sample(32, np.random.default_rng(6))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    other = TransitionReplay(2, 13, (1, 2, 2), frame_stack=2, n_step=3, gamma=0.9)
    with pytest.raises(ValueError, match="capacity_per_env"):
        other.load_state_tensors(rb.state_tensors())


def test_nbytes_matches_documented_footprint() -> None:
    rb = TransitionReplay(4, 100, (3, 7, 7))
    slots = 4 * 100
    tree_leaves = 512  # next power of two
    assert rb.nbytes == slots * (3 * 7 * 7 + 18) + 2 * tree_leaves * 8


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="capacity_per_env"):
        TransitionReplay(1, 5, (1, 1, 1), n_step=5)
    rb = TransitionReplay(2, 20, (1, 2, 2))
    no = np.zeros(2, bool)
    with pytest.raises(ValueError, match="uint8"):
        rb.add(np.zeros((2, 1, 2, 2), np.float32), np.zeros(2, np.int64), None, None,
               np.zeros(2), no, no)
    with pytest.raises(ValueError, match="one unstacked frame"):
        rb.add(np.zeros((2, 2, 2, 2), np.uint8), np.zeros(2, np.int64), None, None,
               np.zeros(2), no, no)
    with pytest.raises(ValueError, match="non-finite reward"):
        rb.add(np.zeros((2, 1, 2, 2), np.uint8), np.zeros(2, np.int64), None, None,
               np.array([0.0, np.inf]), no, no)
    with pytest.raises(ValueError, match="no sampleable"):
        rb.sample(4, np.random.default_rng(0))
    assert not rb.can_sample()


@pytest.mark.parametrize(("frame_stack", "n_step"), [(1, 1), (1, 3), (2, 3), (3, 2)])
def test_eligibility_matches_a_brute_force_scan_of_the_stream(frame_stack: int,
                                                              n_step: int) -> None:
    """Every stored transition is sampleable exactly when the documented rule says so,
    recomputed here by scanning each env's stream: a non-autoreset step whose n-step window
    ends in a termination or whose bootstrap step is written, and whose stack's ring slots
    have not been overwritten (the ring wraps several times)."""
    rng = np.random.default_rng(frame_stack * 10 + n_step)
    num_envs, capacity, steps = 3, 9, 60
    rb = TransitionReplay(num_envs, capacity, (1, 1, 1), frame_stack=frame_stack,
                          n_step=n_step, gamma=GAMMA, prioritized=False)
    term = rng.random((steps, num_envs)) < 0.12
    trunc = ~term & (rng.random((steps, num_envs)) < 0.08)
    for t in range(steps):
        rb.add(_frame(t % 200, num_envs), np.zeros(num_envs, np.int64), None, None,
               np.ones(num_envs), term[t], trunc[t])
        n_added = t + 1
        for e in range(num_envs):
            autoreset = np.zeros(n_added, bool)  # the step after an episode end
            for s in range(1, n_added):
                autoreset[s] = (term[s - 1, e] or trunc[s - 1, e]) and not autoreset[s - 1]
            for st in range(max(0, n_added - capacity), n_added):
                expected = False
                # The S ring slots of its stack (also before step 0) are all still held: a
                # full ring does not sample its oldest S - 1 steps.
                if not autoreset[st] and st - frame_stack + 1 >= n_added - capacity:
                    m, ends_in_termination = n_step, False
                    for k in range(n_step):
                        s = st + k
                        if s >= n_added:
                            break
                        if not autoreset[s] and (term[s, e] or trunc[s, e]):
                            m, ends_in_termination = k + 1, bool(term[s, e])
                            break
                    expected = ends_in_termination or st + m < n_added
                assert rb.eligible[e, st % capacity] == expected, (t, e, st)
    assert len(rb) == int(rb.eligible.sum())
