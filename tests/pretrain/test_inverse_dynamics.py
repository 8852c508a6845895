from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig
from rltransfer.pretrain.inverse_dynamics import (
    InverseDynamicsConfig,
    InverseDynamicsModel,
    collect_random_transitions,
    evaluate_inverse_dynamics,
    pretrain_inverse_dynamics,
    train_inverse_dynamics,
)
from rltransfer.pretrain.supervised import train_validation_split
from rltransfer.replay.transition import FrameStacker
from rltransfer.runtime.checkpoint import load_checkpoint
from rltransfer.runtime.config import ConfigError, from_dict
from rltransfer.transfer.encoder import load_pretrained_encoder
from tests.pretrain.toy_envs import counter_envs, counter_vector_env, square_vector_env

torch.set_num_threads(1)


def test_reset_every_k_counted_in_agent_steps() -> None:
    env = counter_vector_env(2)
    k = 5
    data = collect_random_transitions(env, 23, reset_every_env_steps=k, frame_stack=1, seed=0)
    assert len(data) == 23
    # 2 envs x 5 steps = 10 triples per segment: 3 segments (the last one cut short).
    assert data.num_resets == 3
    assert [e.resets for e in counter_envs(env)] == [3, 3]
    obs, actions, next_obs = data.batch(np.arange(len(data)))
    step = obs[:, 0, 0, 0].astype(int)  # steps since reset + 1
    # every triple is one agent step inside a segment of exactly k steps
    np.testing.assert_array_equal(next_obs[:, 0, 0, 0], step + 1)
    assert step.min() == 1 and step.max() == k
    assert (obs[:, 2] == next_obs[:, 2]).all()  # same reset count: never across a reset
    assert (obs[:, 1] == next_obs[:, 1]).all()  # same env
    # first two segments complete: each env has triples for steps 1..5 in each
    for env_id in (0, 1):
        for segment in (1, 2):
            sel = (obs[:, 1, 0, 0] == env_id) & (obs[:, 2, 0, 0] == segment)
            assert sorted(step[sel]) == [1, 2, 3, 4, 5]
    # the recorded actions are the ones the envs received
    assert actions.dtype == np.int64 and set(np.unique(actions)) <= {0, 1, 2}
    for env_id in (0, 1):
        taken = np.array(counter_envs(env)[env_id].actions)
        sel = obs[:, 1, 0, 0] == env_id
        np.testing.assert_array_equal(actions[sel], taken[: sel.sum()])


def test_natural_episode_end_gives_no_triple_across_episodes() -> None:
    env = counter_vector_env(1, episode_len=3)
    data = collect_random_transitions(env, 9, reset_every_env_steps=100, frame_stack=2, seed=1)
    obs, _, next_obs = data.batch(np.arange(9))
    # each 3-step episode gives triples 1->2, 2->3, 3->4; the autoreset step gives none
    assert obs[:, 3, 0, 0].tolist() == [1, 2, 3] * 3  # newest frame's step counter
    assert next_obs[:, 3, 0, 0].tolist() == [2, 3, 4] * 3
    # stack of 2 (channels 0..2: older frame): zeros before the episode's first frame
    assert obs[:, 0, 0, 0].tolist() == [0, 1, 2] * 3
    assert data.num_resets == 1


def test_frames_stored_once_and_stacks_match_frame_stacker() -> None:
    num_envs, k, stack = 3, 4, 3
    env = counter_vector_env(num_envs, episode_len=3)  # natural ends and forced resets
    data = collect_random_transitions(env, 40, reset_every_env_steps=k, frame_stack=stack)
    assert data.frames.dtype == np.uint8
    # one frame per env per env.step / env.reset call, nothing duplicated per stack
    steps = data.num_env_steps // num_envs
    assert data.frames.shape[0] <= num_envs * (steps + data.num_resets)
    assert data.frames.shape[0] < 2 * len(data)  # stacks would need 2 * S * T frames
    # Replay the stored frames through the project's FrameStacker: identical stacks.
    stacker = FrameStacker(num_envs, data.frames.shape[1:], stack)
    num_rows = data.frames.shape[0] // num_envs
    expected = np.zeros((data.frames.shape[0], *data.obs_shape), np.uint8)
    for row in range(num_rows):
        idx = np.arange(row * num_envs, (row + 1) * num_envs)
        first = data.episode_start[idx] == idx
        expected[idx] = stacker.push(data.frames[idx], first)
    obs, _, next_obs = data.batch(np.arange(len(data)))
    np.testing.assert_array_equal(obs, expected[data.obs_index])
    np.testing.assert_array_equal(next_obs, expected[data.obs_index + num_envs])
    # hand check of one stack: newest frame at step counter 3 -> [1, 2, 3]
    sel = np.flatnonzero(obs[:, 6, 0, 0] == 3)[0]
    assert obs[sel, [0, 3, 6], 0, 0].tolist() == [1, 2, 3]


def test_box_actions_uniform_in_bounds() -> None:
    env = square_vector_env(2, continuous=True)
    data = collect_random_transitions(env, 400, reset_every_env_steps=50, frame_stack=1)
    assert data.actions.shape == (400, 2) and data.actions.dtype == np.float32
    assert data.actions.min() >= -1 and data.actions.max() <= 1
    assert abs(data.actions.mean()) < 0.1 and abs(data.actions.var() - 1 / 3) < 0.05
    assert not data.discrete and data.action_dim == 2


def test_rejects_non_pixel_observations() -> None:
    import gymnasium as gym

    env = gym.make_vec("CartPole-v1", num_envs=1)
    with pytest.raises(ValueError, match="uint8 pixel observations"):
        collect_random_transitions(env, 5)


def _small_encoder() -> PixelEncoderConfig:
    # feature_dim 100 as in the paper: dropout 0.5 on a much smaller concatenation stalls
    return PixelEncoderConfig(kind="drq4", num_filters=16, feature_dim=100)


@pytest.mark.parametrize("continuous", [False, True])
def test_inverse_dynamics_learns_toy_env(continuous: bool) -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    env = square_vector_env(8, continuous=continuous)
    data = collect_random_transitions(env, 2400, reset_every_env_steps=100, frame_stack=2)
    train_idx, val_idx = train_validation_split(len(data), 0.1, rng)
    model = InverseDynamicsModel(
        _small_encoder(), data.obs_shape, data.action_dim, data.discrete, (256, 64), 0.5
    )
    device = torch.device("cpu")
    before = evaluate_inverse_dynamics(model, data, val_idx, device)
    start = time.perf_counter()
    history = train_inverse_dynamics(
        model, data, train_idx, val_idx, epochs=8, batch_size=32, lr=1e-3, rng=rng,
        device=device,
    )
    elapsed = time.perf_counter() - start
    final = history[-1]
    print(f"continuous={continuous}: {final} in {elapsed:.1f}s (before: {before})")
    assert len(history) == 8 and history[-1]["train_loss"] < history[0]["train_loss"]
    if continuous:  # chance: predicting the mean action, 1/3 per dim for U(-1, 1)
        assert final["val_chance_mse_per_dim"] == pytest.approx(1 / 3, abs=0.06)
        assert final["val_mse_per_dim"] < 0.15 < before["mse_per_dim"]
    else:  # chance: 5 actions, ~0.2
        assert final["val_chance_accuracy"] < 0.3
        assert final["val_accuracy"] > 0.8 > before["accuracy"] + 0.4


def test_pretrain_inverse_dynamics_writes_loadable_encoder(tmp_path: Path) -> None:
    cfg = from_dict(
        InverseDynamicsConfig,
        {
            "env_id": "toy",
            "num_transitions": 300,
            "reset_every_env_steps": 20,
            "frame_stack": 2,
            "encoder": {"kind": "drq4", "num_filters": 8, "feature_dim": 16},
            "hidden_dims": [32, 16],
            "epochs": 2,
            "validation_fraction": 0.1,
            "out_dir": str(tmp_path / "ik"),
            "progress": False,
        },
    )
    path = pretrain_inverse_dynamics(cfg, env=square_vector_env(2))
    assert path == tmp_path / "ik" / "encoder"
    records = [json.loads(x) for x in (tmp_path / "ik" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert {"val_loss", "val_accuracy", "train_loss"} <= set(records[-1])
    tensors, meta = load_checkpoint(path)
    assert meta["architecture"]["source"] == "inverse_dynamics"
    assert meta["architecture"]["obs_shape"] == [2, 20, 20]
    assert meta["data"]["num_transitions"] == 300 and meta["data"]["num_validation"] == 30
    assert meta["metrics"]["val_loss"] == pytest.approx(records[-1]["val_loss"])
    rl_encoder = PixelEncoder(cfg.encoder, (2, 20, 20))
    loaded = load_pretrained_encoder(rl_encoder, tmp_path / "ik")
    assert loaded and all(name.startswith("encoder/convs/") for name in loaded)
    for name, value in rl_encoder.convs.state_dict().items():
        torch.testing.assert_close(value, tensors[f"encoder/convs/{name}"])


def test_config_rejects_unknown_and_invalid() -> None:
    with pytest.raises(ConfigError, match="num_transitons"):
        from_dict(InverseDynamicsConfig, {"num_transitons": 5})
    with pytest.raises(ConfigError, match="validation_fraction"):
        InverseDynamicsConfig(validation_fraction=1.5).validate()
    defaults = InverseDynamicsConfig()
    assert (defaults.reset_every_env_steps, defaults.lr, defaults.batch_size) == (100, 1e-3, 128)
    assert (defaults.epochs, defaults.validation_fraction, defaults.dropout) == (30, 0.05, 0.5)
    assert defaults.hidden_dims == (1024, 256) and defaults.encoder.kind == "pad11"


def test_short_run_on_dmc_reacher(tmp_path: Path) -> None:
    try:
        from rltransfer.envs.spec import env_spec

        env_spec("DMC/reacher-easy")
    except (ValueError, ImportError) as e:
        pytest.skip(f"DMC envs are not available yet (envs/dmc.py): {e}")
    cfg = InverseDynamicsConfig(
        env_id="DMC/reacher-easy",
        num_transitions=200,
        epochs=1,
        encoder=PixelEncoderConfig(kind="drq4", num_filters=16, feature_dim=32),
        out_dir=str(tmp_path / "ik"),
        progress=False,
    )
    path = pretrain_inverse_dynamics(cfg)
    _, meta = load_checkpoint(path)
    assert meta["architecture"]["obs_shape"][0] == 9  # 3 RGB frames
    assert meta["data"]["num_transitions"] == 200 and not meta["data"]["discrete_actions"]
    assert np.isfinite(meta["metrics"]["val_loss"])
