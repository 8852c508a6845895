from __future__ import annotations

import numpy as np

from rltransfer.intrinsic import ConstantReward, IntrinsicReward


def test_constant_reward() -> None:
    reward = ConstantReward(0.5)
    assert isinstance(reward, IntrinsicReward)
    obs = np.zeros((3, 1, 4, 4), dtype=np.uint8)
    out = reward.compute(obs, np.zeros(3, dtype=np.int64), obs)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.5, 0.5, 0.5])
    assert reward.update(obs) == {}
    fresh = ConstantReward()
    np.testing.assert_array_equal(fresh.compute(obs, np.zeros(3), obs), [1.0, 1.0, 1.0])
    fresh.load_state_tensors(reward.state_tensors())
    assert fresh.value == 0.5
