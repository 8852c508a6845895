"""SequenceReplay with NGU's policy family: stored j and per-sample gamma_j, by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rltransfer.replay import SequenceReplay


def _replay(**kw: Any) -> SequenceReplay:
    args: dict[str, Any] = dict(
        num_envs=2, capacity_per_env=40, frame_shape=(1, 1, 1), state_dim=2, sequence_length=4,
        burn_in=2, sequence_overlap=2, n_step=2, gamma=0.5, policy_gammas=[0.5, 0.25],
    )
    args.update(kw)
    return SequenceReplay(**args)


def _add(r: SequenceReplay, t: int, policy: np.ndarray | None, *, term: bool = False) -> None:
    """Step ``t`` for every env: frame t, action t % 3, reward t + 1, state [t, -t]."""
    b = r.num_envs
    r.add(np.full((b, 1, 1, 1), t, np.uint8), np.full(b, t % 3), None, None,
          np.full(b, t + 1.0), np.full(b, term), np.zeros(b, bool),
          core_state=np.tile(np.array([t, -t], np.float32), (b, 1)),
          extrinsic_reward=np.full(b, 10.0 * t), intrinsic_reward=np.full(b, 0.5 * t),
          policy_index=policy)


def _ids(r: SequenceReplay, env: int) -> dict[int, int]:
    ids = r.eligible_indices()
    ids = ids[ids // r.capacity_per_env == env]
    return {int(s): int(i) for s, i in zip(r.step_of_index(ids), ids, strict=True)}


def test_per_env_gamma_j_in_n_step_targets_by_hand() -> None:
    r = _replay()
    for t in range(10):  # env 0 acts as j = 0 (gamma .5), env 1 as j = 1 (gamma .25)
        _add(r, t, np.array([0, 1]), term=(t == 6))
    b0 = r.gather(np.array([_ids(r, 0)[2], _ids(r, 0)[4]]))
    b1 = r.gather(np.array([_ids(r, 1)[2], _ids(r, 1)[4]]))
    # env 0, gamma .5: u=2: 3 + .5*4 = 5, 4 + .5*5 = 6.5, disc .25.
    np.testing.assert_allclose(b0["n_step_return"][0, 2:4], [5.0, 6.5])
    np.testing.assert_allclose(b0["bootstrap_discount"][0, 2:4], [0.25, 0.25])
    # env 1, gamma .25: u=2: 3 + .25*4 = 4, 4 + .25*5 = 5.25, disc .0625.
    np.testing.assert_allclose(b1["n_step_return"][0, 2:4], [4.0, 5.25])
    np.testing.assert_allclose(b1["bootstrap_discount"][0, 2:4], [0.0625, 0.0625])
    # u=4: 5 + .25*6 = 6.5 (disc .0625), 6 + .25*7 = 7.75 ending in the termination (0), 7.
    np.testing.assert_allclose(b1["n_step_return"][1, 2:5], [6.5, 7.75, 7.0])
    np.testing.assert_allclose(b1["bootstrap_discount"][1, 2:5], [0.0625, 0.0, 0.0])
    np.testing.assert_array_equal(b1["loss_mask"][1], [0, 0, 1, 1, 1, 0])
    # the replay hands back j per step (front padding: the training start's j)
    np.testing.assert_array_equal(b0["policy_index"], np.zeros((2, 6)))
    np.testing.assert_array_equal(b1["policy_index"], np.ones((2, 6)))
    assert b1["policy_index"].dtype == np.int64


def test_gamma_follows_each_steps_own_policy() -> None:
    r = _replay(num_envs=1)
    for t in range(10):  # j = 0 for steps 0..2, then j = 1
        _add(r, t, np.array([0 if t < 3 else 1]), term=(t == 6))
    b = r.gather(np.array([_ids(r, 0)[2]]))
    np.testing.assert_array_equal(b["policy_index"][0], [0, 0, 0, 1, 1, 1])
    # step 2 (j=0, gamma .5): 3 + .5*4 = 5, disc .25; step 3 (j=1, gamma .25): 4 + .25*5.
    np.testing.assert_allclose(b["n_step_return"][0, 2:4], [5.0, 5.25])
    np.testing.assert_allclose(b["bootstrap_discount"][0, 2:4], [0.25, 0.0625])


def test_single_policy_is_the_single_gamma_replay() -> None:
    plain = _replay(policy_gammas=None, num_envs=1)
    family = _replay(policy_gammas=[0.5], num_envs=1)
    for t in range(14):
        _add(plain, t, None, term=(t == 6))
        _add(family, t, np.zeros(1, np.int64), term=(t == 6))
    ids = plain.eligible_indices()
    np.testing.assert_array_equal(ids, family.eligible_indices())
    a, b = plain.gather(ids), family.gather(ids)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # the single-policy checkpoint layout is unchanged apart from the stored j
    assert plain.state_tensors()["config_float"].shape == (3,)
    assert _replay().state_tensors()["config_float"].shape == (5,)


def test_j_is_checkpointed_and_validated() -> None:
    r = _replay()
    for t in range(10):
        _add(r, t, np.array([1, 0]), term=(t == 6))
    state = r.state_tensors()
    np.testing.assert_array_equal(state["policy_index"][:, :10], [[1] * 10, [0] * 10])
    fresh = _replay()
    fresh.load_state_tensors(state)
    ids = r.eligible_indices()
    np.testing.assert_array_equal(fresh.gather(ids)["n_step_return"],
                                  r.gather(ids)["n_step_return"])
    with pytest.raises(ValueError, match="config_float"):  # other gamma_j
        _replay(policy_gammas=[0.3, 0.2]).load_state_tensors(state)
    # a checkpoint from before the family (no stored j) loads into a single-policy replay
    single = _replay(policy_gammas=None)
    old = single.state_tensors()
    del old["policy_index"]
    single.load_state_tensors(old)
    with pytest.raises(ValueError, match=r"policy_index must be in \[0, 2\)"):
        _add(_replay(), 0, np.array([0, 2]))
    with pytest.raises(ValueError, match="policy_gammas"):
        _replay(policy_gammas=[0.5, 1.5])
