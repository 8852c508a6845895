from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rltransfer.core.checkpoint import load_checkpoint
from rltransfer.core.config import ConfigError, from_dict
from rltransfer.core.images import center_crop
from rltransfer.methods.encoder_pretraining.inverse_dynamics import (
    InverseDynamicsConfig,
    pretrain_inverse_dynamics,
    train_inverse_dynamics,
)
from rltransfer.methods.encoder_pretraining.inverse_dynamics_data import (
    collect_random_transitions,
)
from rltransfer.methods.encoder_pretraining.inverse_dynamics_model import (
    InverseDynamicsModel,
    evaluate_inverse_dynamics,
)
from rltransfer.methods.encoder_pretraining.supervised import train_validation_split
from rltransfer.methods.encoder_pretraining.transfer import (
    EncoderMismatchError,
    load_pretrained_encoder,
    read_pretrained_architecture,
)
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig
from rltransfer.replay.transition import FrameStacker
from tests.pretrain.toy_envs import (
    counter_envs,
    counter_vector_env,
    square_vector_env,
    vector_env,
)

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
    return PixelEncoderConfig(kind="drq4", num_filters=16, feature_dim=100)


def test_model_maps_flattened_conv_features_of_both_frames() -> None:
    """The MLP reads the two flattened conv feature maps (not the encoder head), with dropout
    on its input and after each hidden layer (Kadavath et al.'s public IK network)."""
    torch.manual_seed(0)
    cfg = PixelEncoderConfig(kind="drq4", num_filters=4, feature_dim=7)
    model = InverseDynamicsModel(cfg, (2, 20, 20), 3, False, (16, 8), 0.5)
    # drq4 on 20x20: 20 -> 9 (stride 2) -> 7 -> 5 -> 3, so 4 x 3 x 3 = 36 per observation
    assert model.conv_feature_size == 36
    kinds = [type(m).__name__ for m in model.mlp]
    assert kinds == ["Dropout", "Linear", "LayerNorm", "ReLU", "Dropout",
                     "Linear", "LayerNorm", "ReLU", "Dropout", "Linear"]
    assert model.mlp[1].in_features == 72 and model.mlp[-1].out_features == 3
    assert all(m.p == 0.5 for m in model.mlp if isinstance(m, torch.nn.Dropout))
    obs = torch.randint(0, 256, (5, 2, 20, 20), dtype=torch.uint8)
    nxt = torch.randint(0, 256, (5, 2, 20, 20), dtype=torch.uint8)
    model.eval()
    with torch.no_grad():
        x = torch.cat([model.encoder.conv_features(obs).reshape(5, 36),
                       model.encoder.conv_features(nxt).reshape(5, 36)], dim=1)
        expected = model.mlp(x)
        torch.testing.assert_close(model(obs, nxt), expected)
        # swapping the frames changes the prediction: the order of o_t, o_{t+1} matters
        assert not torch.allclose(model(nxt, obs), expected)
    model.train()
    loss = model.loss(model(obs, nxt), torch.rand(5, 3))
    loss.backward()
    assert all(p.grad is None for p in model.encoder.head.parameters())  # the head is unused
    assert all(p.grad is not None for p in model.encoder.convs.parameters())


def test_loss_is_the_summed_squared_error_averaged_over_the_batch() -> None:
    model = InverseDynamicsModel(_small_encoder(), (1, 20, 20), 2, False, (8,), 0.0)
    pred = torch.tensor([[0.5, -1.0], [0.0, 0.25]])
    target = torch.tensor([[0.0, 0.0], [1.0, 0.25]])
    # (0.25 + 1) and (1 + 0): mean 1.125
    assert float(model.loss(pred, target)) == pytest.approx(1.125)


class _PatternEnv:
    """Frames of 100x100 whose pixel (r, c) of channel k holds (r + 2c + 50k + t) mod 256, t
    the step count: any window is recognisable."""

    def __init__(self, size: int = 100) -> None:
        import gymnasium as gym

        self.size, self.t = size, 0
        self.observation_space = gym.spaces.Box(0, 255, (3, size, size), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def frame(self, t: int) -> np.ndarray:
        r, c = np.mgrid[0 : self.size, 0 : self.size]
        return np.stack([(r + 2 * c + 50 * k + t) % 256 for k in range(3)]).astype(np.uint8)


def _pattern_vector_env() -> object:
    import gymnasium as gym

    class Env(_PatternEnv, gym.Env):  # type: ignore[misc]
        def reset(self, *, seed=None, options=None):
            self.t = 0
            return self.frame(0), {}

        def step(self, action):
            self.t += 1
            return self.frame(self.t), 0.0, False, False, {}

    return vector_env([Env])


def test_frames_are_centre_crops_of_the_render() -> None:
    """IK stores the centre 84x84 window of 100x100 renders: rows and columns 8..91 (the
    public code's x[:, :, 8:-8, 8:-8]), the window SAC's centre crop shows at evaluation."""
    env = _pattern_vector_env()
    data = collect_random_transitions(env, 5, frame_stack=3, crop_size=84)  # type: ignore[arg-type]
    assert data.frames.shape[1:] == (3, 84, 84) and data.obs_shape == (9, 84, 84)
    assert data.source_frame_size == (100, 100)
    full = _PatternEnv().frame(2)
    np.testing.assert_array_equal(data.frames[2], full[:, 8:92, 8:92])
    assert data.frames[2, 0, 0, 0] == (8 + 2 * 8 + 2) % 256  # pixel (8, 8) of step 2
    from rltransfer.agents.sac.augmentation import eval_view

    sac_view = eval_view(torch.from_numpy(full[None]), "crop", 84)[0].numpy()
    np.testing.assert_array_equal(data.frames[2], sac_view)
    np.testing.assert_array_equal(center_crop(full, 84), full[:, 8:92, 8:92])
    with pytest.raises(ValueError, match="crop_size 120 exceeds"):
        collect_random_transitions(_pattern_vector_env(), 5, crop_size=120)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("continuous", [False, True])
def test_inverse_dynamics_learns_toy_env(continuous: bool) -> None:
    """The toy IK check (docs/benchmarks.md): seeds 0-2 reach val accuracy >= 0.99 /
    val MSE per dim <= 0.06 (chance ~0.2 / 1/3); seed 0 is run here."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    env = square_vector_env(8, continuous=continuous)
    data = collect_random_transitions(env, 2400, reset_every_env_steps=100, frame_stack=2)
    train_idx, val_idx = train_validation_split(len(data), 0.1, rng)
    model = InverseDynamicsModel(
        _small_encoder(), data.obs_shape, data.action_dim, data.discrete, (1024, 256), 0.5
    )
    device = torch.device("cpu")
    before = evaluate_inverse_dynamics(model, data, val_idx, device)
    start = time.perf_counter()
    history = train_inverse_dynamics(
        model, data, train_idx, val_idx, epochs=12, batch_size=32, lr=1e-3, rng=rng,
        device=device,
    )
    elapsed = time.perf_counter() - start
    final = history[-1]
    print(f"continuous={continuous}: {final} in {elapsed:.1f}s (before: {before})")
    assert len(history) == 12 and history[-1]["train_loss"] < history[0]["train_loss"]
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
            "render_size": None,
            "crop_size": None,
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
    # the head took no part in IK: only the conv layers are saved
    assert tensors and all(name.startswith("encoder/convs/") for name in tensors)
    arch = read_pretrained_architecture(path)
    assert (arch.frame_stack, arch.render_size, arch.crop_size) == (2, 20, None)
    assert not arch.has_head and arch.encoder_config == cfg.encoder
    with pytest.raises(EncoderMismatchError, match="no encoder head"):
        load_pretrained_encoder(PixelEncoder(cfg.encoder, (2, 20, 20)), path, include_head=True)
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
    # the paper's geometry: 100x100 renders, centre 84 crops
    assert (defaults.render_size, defaults.crop_size) == (100, 84)
    with pytest.raises(ConfigError, match="crop_size 120 exceeds render_size 100"):
        InverseDynamicsConfig(crop_size=120).validate()


@pytest.mark.slow
def test_short_run_on_dmc_reacher(tmp_path: Path) -> None:
    """Default geometry on DMC: 100x100 renders centre-cropped to 84 (RL's crop), 3 frames;
    the metadata says so, and the first stored frame is the crop of a 100x100 render."""
    pytest.importorskip("dm_control")
    from rltransfer.envs import make_env

    cfg = InverseDynamicsConfig(
        env_id="DMC/reacher-easy",
        num_transitions=200,
        epochs=1,
        encoder=PixelEncoderConfig(kind="drq4", num_filters=16, feature_dim=32),
        seed=3,
        out_dir=str(tmp_path / "ik"),
        progress=False,
    )
    path = pretrain_inverse_dynamics(cfg)
    _, meta = load_checkpoint(path)
    assert meta["architecture"]["obs_shape"] == [9, 84, 84]  # 3 RGB frames of 84x84
    assert (meta["architecture"]["render_size"], meta["architecture"]["crop_size"]) == (100, 84)
    assert meta["architecture"]["frame_stack"] == 3
    assert meta["data"]["num_transitions"] == 200 and not meta["data"]["discrete_actions"]
    assert meta["metrics"]["val_loss"] > 0
    # the IK frames are centre crops of the 100x100 renders the RL env makes
    env = make_env("DMC/reacher-easy", 1, seed=3, render_size=100)
    ik_env = make_env("DMC/reacher-easy", 1, seed=3, render_size=100)
    try:
        render = np.asarray(env.reset()[0])[0]
        data = collect_random_transitions(ik_env, 3, frame_stack=3, crop_size=84)
    finally:
        env.close()
        ik_env.close()
    assert render.shape == (3, 100, 100)
    np.testing.assert_array_equal(data.frames[0], render[:, 8:92, 8:92])
