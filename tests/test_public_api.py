"""The public API: ``import rltransfer`` names the configs, train/evaluate/load_policy, recipes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import rltransfer
from rltransfer.core.config import ConfigError


def test_every_public_name_resolves() -> None:
    for name in rltransfer.__all__:
        assert getattr(rltransfer, name) is not None
    assert rltransfer.TrainConfig().env_id
    assert "bt-minigrid" in rltransfer.RECIPES
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = rltransfer.nope  # type: ignore[attr-defined]


def test_import_is_lazy() -> None:
    code = "import sys, rltransfer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_evaluate_a_policy_object_on_minigrid() -> None:
    pytest.importorskip("minigrid")
    # MiniGrid actions: 2 = forward. In Empty-5x5 the agent starts at (1, 1) facing east;
    # always "forward" hits the wall after 2 steps and never reaches the goal: return 0.
    forward = rltransfer.CallablePolicy(lambda obs: np.full(obs.shape[0], 2), num_actions=7)
    returns = rltransfer.evaluate(forward, "MiniGrid-Empty-5x5-v0", episodes=3, seed=0)
    assert returns.shape == (3,)
    assert np.all(returns == 0.0)
    with pytest.raises(ConfigError, match="needs env_id"):
        rltransfer.evaluate(forward, episodes=1)
    with pytest.raises(ConfigError, match="episodes must be >= 1"):
        rltransfer.evaluate(forward, "MiniGrid-Empty-5x5-v0", episodes=0)
