"""pi_p from any source (issue 10, item 11): a Stable-Baselines3 model trained here drives
Behavior Transfer's flights on MiniGrid through :class:`rltransfer.sb3.SB3Policy`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.train import Trainer, train
from rltransfer.core.config import ConfigError
from rltransfer.core.policy import CallablePolicy, SpaceMismatchError
from rltransfer.core.run_dir import RunConflictError
from rltransfer.envs.minigrid import minigrid_env_fn
from rltransfer.explore.base import Selection
from rltransfer.sb3 import SB3Policy

ENV = "MiniGrid-Empty-5x5-v0"


def _bt_config(run_dir: Path, env_id: str = ENV, **kw: Any) -> TrainConfig:
    settings: dict[str, Any] = dict(
        env_id=env_id, explore="bt", epsilon_levy=0.3, num_envs=2, total_env_steps=300,
        learning_starts_env_steps=100, updates_per_env_step=0.125, eval_every_env_steps=10**9,
        eval_episodes=2, checkpoint_every_env_steps=10**9, replay_capacity_env_steps=1_000,
        tensorboard=False, progress=False, run_dir=str(run_dir),
        agent=R2D2Config(torso="mlp", feature_dim=16, hidden=16, batch_size=8),
    )
    return TrainConfig(**{**settings, **kw})


@pytest.fixture(scope="module")
def ppo_model() -> Any:
    sb3 = pytest.importorskip("stable_baselines3")  # optional extra rltransfer[sb3]
    import torch

    torch.set_num_threads(1)
    # The same observation our env gives: MiniGrid's full-grid encoding, uint8 [3, 5, 5].
    env = minigrid_env_fn(ENV, task="goal", full_obs=True, max_episode_steps=100)()
    model = sb3.PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=4, seed=0,
                    device="cpu", policy_kwargs={"net_arch": [32, 32]})
    model.learn(total_timesteps=2_048)
    return model


def test_sb3_ppo_drives_bt_flights(tmp_path: Path, ppo_model: Any) -> None:
    prior = SB3Policy(ppo_model)
    assert prior.num_actions == 7 and prior.obs_shape == (3, 5, 5)
    trainer = Trainer(_bt_config(tmp_path / "bt"), prior=prior)
    seen: list[tuple[np.ndarray, Selection]] = []
    select = trainer.explorer.select

    def spy(q: np.ndarray, obs: np.ndarray, first: np.ndarray,
            prior_actions: np.ndarray | None) -> Selection:
        sel = select(q, obs, first, prior_actions)
        seen.append((obs.copy(), sel))
        return sel

    trainer.explorer.select = spy  # type: ignore[method-assign]
    result = trainer.run()
    assert result.env_steps == 300 and result.num_updates > 0
    obs = np.concatenate([o for o, _ in seen])
    in_flight = np.concatenate([s.in_flight for _, s in seen])
    extra = np.concatenate([s.extra for _, s in seen])
    executed = np.concatenate([s.env_actions for _, s in seen])
    assert in_flight.sum() >= 30, "epsilon_levy 0.3 starts many flights"
    predicted, _ = ppo_model.predict(obs, deterministic=True)
    use_prior = in_flight | extra
    # During flights (and a+ steps) the env executes exactly the SB3 model's action.
    np.testing.assert_array_equal(executed[use_prior], np.asarray(predicted)[use_prior])
    # ... and outside them the learner's own choices: not all equal to the model's.
    assert (executed[~use_prior] != np.asarray(predicted)[~use_prior]).any()
    recorded = json.loads((tmp_path / "bt" / "config.json").read_text())
    assert recorded["prior"] == "<python object: rltransfer.sb3.SB3Policy>"


def test_pi_p_object_kind_is_part_of_the_run(tmp_path: Path, ppo_model: Any) -> None:
    cfg = _bt_config(tmp_path / "bt", total_env_steps=40, learning_starts_env_steps=20)
    train(cfg, prior=SB3Policy(ppo_model))
    # Resuming with an object of the same class is the same run (it is finished: no-op).
    again = train(cfg, prior=SB3Policy(ppo_model))
    assert again.env_steps == 40
    # Another kind of object is another run.
    with pytest.raises(RunConflictError, match=r"SB3Policy.*CallablePolicy"):
        Trainer(cfg, prior=CallablePolicy(lambda o: np.zeros(o.shape[0]), 7))
    # The recorded config cannot rebuild the object, nor may a path and an object mix.
    recorded = json.loads((tmp_path / "bt" / "config.json").read_text())
    with pytest.raises(ConfigError, match="Python object"):
        Trainer(TrainConfig(**{**cfg.__dict__, "prior": recorded["prior"]}))
    with pytest.raises(ConfigError, match="once"):
        Trainer(TrainConfig(**{**cfg.__dict__, "prior": "runs/pre"}),
                prior=SB3Policy(ppo_model))
    with pytest.raises(ConfigError, match="init-from"):
        Trainer(_bt_config(tmp_path / "init", init="partial"), prior=SB3Policy(ppo_model))
    with pytest.raises(ConfigError, match="backend=local"):  # Ray actors load pi_p by path
        Trainer(_bt_config(tmp_path / "ray", backend="ray"), prior=SB3Policy(ppo_model))


def test_space_mismatch_is_a_clear_error(tmp_path: Path, ppo_model: Any) -> None:
    # A model of the 5x5 grid on the 6x6 grid: observation shapes differ.
    with pytest.raises(SpaceMismatchError, match=r"\(3, 5, 5\).*\(3, 6, 6\)"):
        Trainer(_bt_config(tmp_path / "a", env_id="MiniGrid-Empty-6x6-v0"),
                prior=SB3Policy(ppo_model))
    # A model with 3 actions on a 7-action task.
    small = FakeModel(gym.spaces.Box(0, 255, (3, 5, 5), np.uint8), gym.spaces.Discrete(3))
    with pytest.raises(SpaceMismatchError, match="3 actions but the task has 7"):
        Trainer(_bt_config(tmp_path / "b"), prior=SB3Policy(small))
    # A continuous-action model cannot be pi_p.
    with pytest.raises(SpaceMismatchError, match="discrete"):
        SB3Policy(FakeModel(gym.spaces.Box(0, 1, (4,)), gym.spaces.Box(-1, 1, (2,))))


class FakeModel:
    """Stand-in with SB3's predict signature: action = (sum of the observation) mod n."""

    def __init__(self, observation_space: Any, action_space: Any) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.calls: list[dict[str, Any]] = []

    def predict(self, observation: np.ndarray, state: Any = None,
                episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        self.calls.append({"obs": observation, "state": state, "episode_start": episode_start,
                           "deterministic": deterministic})
        n = self.action_space.n
        sums = observation.reshape(observation.shape[0], -1).sum(axis=1)
        return (sums % n).astype(np.int64), ("h", int(observation.shape[0]))


def test_default_transform_flattens_for_a_flat_model() -> None:
    model = FakeModel(gym.spaces.Box(0.0, 10.0, (12,), np.float32), gym.spaces.Discrete(5))
    policy = SB3Policy(model)
    assert not hasattr(policy, "obs_shape")  # a flat space does not say the image shape
    obs = np.arange(24, dtype=np.uint8).reshape(2, 3, 2, 2)  # stacked [B, C*S, H, W]
    first = np.array([True, False])
    actions, state = policy.act(obs, policy.reset(2), first)
    call = model.calls[-1]
    assert call["obs"].shape == (2, 12) and call["obs"].dtype == np.float32
    # sums: 0 + ... + 11 = 66, 12 + ... + 23 = 210; mod 5 -> 1, 0
    assert actions.tolist() == [1, 0] and actions.dtype == np.int64
    np.testing.assert_array_equal(call["episode_start"], first)
    assert call["deterministic"] is True and call["state"] is None
    assert state == ("h", 2)  # the model's (recurrent) state is carried to the next call
    policy.act(obs, state, ~first)
    assert model.calls[-1]["state"] == ("h", 2)
    with pytest.raises(SpaceMismatchError, match="12 entries"):
        policy.act(np.zeros((2, 3, 3, 3), np.uint8), None, first)


def test_user_obs_transform_and_declared_shape() -> None:
    # A channels-last model: the user maps [B, C, H, W] -> [B, H, W, C] and declares the
    # stacked shape it acts on.
    model = FakeModel(gym.spaces.Box(0, 255, (4, 4, 2), np.uint8), gym.spaces.Discrete(4))
    policy = SB3Policy(model, obs_transform=lambda o: o.transpose(0, 2, 3, 1),
                       obs_shape=(2, 4, 4), deterministic=False)
    assert policy.obs_shape == (2, 4, 4)
    obs = np.ones((3, 2, 4, 4), np.uint8)
    actions, _ = policy.act(obs, None, np.ones(3, bool))
    assert model.calls[-1]["obs"].shape == (3, 4, 4, 2)
    assert model.calls[-1]["deterministic"] is False
    assert actions.tolist() == [0, 0, 0]  # 32 mod 4
    assert policy.observe(actions, np.zeros(3), np.zeros(3), "s") == "s"
