"""Memory: a cue-recall T-maze only an agent with memory can solve (R2D2's LSTM vs feedforward).

The cue (left or right) is visible at the first step only; ``delay`` blank steps follow, then
a "choose" observation where action 0 (left) or 1 (right) ends the episode with reward 1 if it
matches the cue, else 0. Any memoryless policy (frame_stack 1) scores 0.5 in expectation; a
policy that remembers the cue scores 1. The env lives here (tests), not in ``src``.
"""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import rltransfer.agents.r2d2.train as train_module
import rltransfer.evaluation.protocol as protocol
from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.train import train

ENV_ID = "CueRecall-test"


class CueRecall(gym.Env):
    """T-maze cue recall: obs ``uint8[3, 1, 1]`` = (cue left, cue right, choose now)."""

    def __init__(self, delay: int = 5) -> None:
        self.delay = delay
        self.observation_space = gym.spaces.Box(0, 1, (3, 1, 1), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.t = 0
        self.cue = 0

    def _obs(self) -> np.ndarray:
        o = np.zeros((3, 1, 1), np.uint8)
        if self.t == 0:
            o[self.cue] = 1
        elif self.t == self.delay:
            o[2] = 1
        return o

    def reset(self, *, seed: int | None = None, options: Any = None):
        super().reset(seed=seed)
        self.t = 0
        self.cue = int(self.np_random.integers(2))
        return self._obs(), {"task_reward": 0.0}

    def step(self, action: Any):
        if self.t == self.delay:
            reward = float(int(action) == self.cue)
            self.t += 1
            return np.zeros((3, 1, 1), np.uint8), reward, True, False, {"task_reward": reward}
        self.t += 1
        return self._obs(), 0.0, False, False, {"task_reward": 0.0}


def _make_env(env_id: str, num_envs: int, seed: int, **_: Any) -> SyncVectorEnv:
    envs = SyncVectorEnv([CueRecall for _ in range(num_envs)],
                         autoreset_mode=AutoresetMode.NEXT_STEP)
    envs.reset(seed=[seed + i for i in range(num_envs)])
    return envs


@pytest.fixture
def cue_recall(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = types.SimpleNamespace(frame_stack=1, obs_scale=1.0)
    for module in (train_module, protocol):
        monkeypatch.setattr(module, "make_env", _make_env)
        monkeypatch.setattr(module, "env_spec", lambda env_id: spec)


def test_cue_recall_env_contract() -> None:
    envs = _make_env(ENV_ID, 2, 0)
    obs, _ = envs.reset(seed=[3, 4])
    assert obs.shape == (2, 3, 1, 1) and obs[:, :2].sum() == 2
    for _ in range(5):
        obs, r, term, *_ = envs.step(np.zeros(2, np.int64))
        assert not term.any() and (r == 0).all()
    assert (obs[:, 2] == 1).all()
    _, r, term, _, info = envs.step(np.zeros(2, np.int64))
    assert term.all() and set(r.tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(info["task_reward"], r)


MEMORY = TrainConfig(
    env_id=ENV_ID, num_envs=8, total_env_steps=6_400, frame_stack=1, seed=0,
    learning_starts_env_steps=480, updates_per_env_step=0.25, eval_every_env_steps=1_000_000,
    eval_episodes=64, checkpoint_every_env_steps=1_000_000, tensorboard=False, progress=False,
    replay_capacity_env_steps=8_000,
    # Adam eps 1e-6 as in MiniGrid's suite defaults (rewards <= 1): with R2D2's 1e-3 the LSTM
    # learned the cue on seed 0 only (seeds 0-2: 1.0, 0.516, 0.5); with 1e-6 on seeds 0-4
    # (1.0 each; feedforward 0.484-0.547).
    agent=R2D2Config(
        torso="mlp", feature_dim=16, hidden=32, lstm_hidden=32, batch_size=16, lr=1e-3,
        adam_eps=1e-6, gamma=0.9, n_step=2, target_update_period_updates=100,
        sequence_length=8, burn_in=2, sequence_overlap=4,
    ),
)


@pytest.mark.slow
def test_recurrent_agent_remembers_the_cue_feedforward_cannot(
    tmp_path: Path, cue_recall: None
) -> None:
    torch.set_num_threads(1)
    lstm = train(dataclasses.replace(
        MEMORY, run_dir=str(tmp_path / "lstm"),
        agent=dataclasses.replace(MEMORY.agent, core="lstm"),
    ))
    ff = train(dataclasses.replace(
        MEMORY, run_dir=str(tmp_path / "ff"),
        agent=dataclasses.replace(MEMORY.agent, core="feedforward"),
    ))
    print(f"cue recall, 64 greedy episodes: lstm {lstm.final_return_mean:.3f} "
          f"({lstm.num_updates} updates, {lstm.wall_seconds:.1f} s), feedforward "
          f"{ff.final_return_mean:.3f} ({ff.wall_seconds:.1f} s)")
    assert lstm.final_return_mean >= 0.95
    # Memoryless: at most the cue frequency of the greedy side (Binomial(64, 0.5)).
    assert ff.final_return_mean <= 0.75
    meta = json.loads((tmp_path / "lstm" / "final" / "meta.json").read_text())
    assert meta["architecture"]["agent_config"]["core"] == "lstm"
