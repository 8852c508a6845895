"""Pixel SAC training loop end to end: a tiny pixel env, crash + resume, DMC smoke run."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv

from rltransfer.agents.sac import SACConfig
from rltransfer.envs.wrappers import TaskRewardInfo
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig
from rltransfer.runtime.checkpoint import latest_checkpoint
from rltransfer.runtime.config import ConfigError
from rltransfer.train_sac import (
    RunConflictError,
    SACTrainConfig,
    evaluate_sac,
    load_sac_agent,
    to_env_action,
    train_sac,
)


class DotEnv(gym.Env):
    """A point in [-1, 1]^2 moved by 2-D actions in [-2, 2] (scaled by 0.1); reward -|p|;
    pixels: 3x24x24 with the point drawn in channel 0 (channel 1 is a constant, channel 2
    the step count). Truncated after 12 steps."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (3, 24, 24), np.uint8)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
        self.p = np.zeros(2)
        self.t = 0

    def _obs(self) -> np.ndarray:
        img = np.zeros((3, 24, 24), np.uint8)
        y, x = ((self.p + 1) * 11.5).round().astype(int)
        img[0, max(0, y - 1):y + 2, max(0, x - 1):x + 2] = 255
        img[1] = 50
        img[2] = self.t * 10
        return img

    def reset(self, *, seed: int | None = None, options: Any = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.p = self.np_random.uniform(-1, 1, 2)
        self.t = 0
        return self._obs(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        assert action.shape == (2,) and np.all(np.abs(action) <= 2.0 + 1e-6)
        self.p = np.clip(self.p + 0.1 * action, -1, 1)
        self.t += 1
        return self._obs(), -float(np.linalg.norm(self.p)), False, self.t >= 12, {}


class Crash(RuntimeError):
    pass


def dot_factory(crash_after_steps: int | None = None) -> Any:
    def build(num_envs: int, seed: int) -> VectorEnv:
        env = gym.vector.SyncVectorEnv([DotEnv] * num_envs,
                                       autoreset_mode=AutoresetMode.NEXT_STEP)
        wrapped = TaskRewardInfo(env, reward_free=False)
        if crash_after_steps is None:
            return wrapped
        inner_step = wrapped.step
        count = [0]

        def step(actions: Any) -> Any:
            count[0] += 1
            if count[0] > crash_after_steps:
                raise Crash("simulated crash")
            return inner_step(actions)

        wrapped.step = step
        return wrapped

    return build


TINY = SACTrainConfig(
    env_id="Dot", num_envs=2, total_env_steps=120, frame_stack=2, warmup_env_steps=40,
    eval_every_env_steps=60, eval_episodes=2, checkpoint_every_env_steps=40,
    replay_capacity_env_steps=400, progress=False, tensorboard=False,
    agent=SACConfig(hidden_dim=32, batch_size=16),
    encoder=PixelEncoderConfig(num_filters=8, feature_dim=16),
)


def _records(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_to_env_action_maps_bounds() -> None:
    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32)
    out = to_env_action(np.array([[-1.0, -1.0], [1.0, 0.0], [0.5, 3.0]]), low, high)
    np.testing.assert_allclose(out, [[-2.0, 0.0], [2.0, 0.5], [1.0, 1.0]])
    assert out.dtype == np.float32


def test_tiny_pixel_run_writes_metrics_checkpoints_final(tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY, run_dir=str(tmp_path / "run"))
    result = train_sac(cfg, dot_factory())
    run = Path(cfg.run_dir)
    assert result.env_steps == 120
    # Updates start after 40 warm-up steps: one per agent step -> 80 updates.
    assert result.num_updates == 80
    evals = _records(run, "eval")
    assert [r["env_steps"] for r in evals] == [60, 120]
    assert all(len(r["returns"]) == 2 for r in evals)
    episodes = _records(run, "episode")
    assert episodes and all(r["length"] == 12 for r in episodes)
    train_records = _records(run, "train")
    assert train_records and "critic_loss" in train_records[0]
    assert latest_checkpoint(run / "checkpoints") is not None
    agent, arch = load_sac_agent(run / "final")
    assert arch["obs_shape"] == [6, 24, 24] and arch["action_high"] == [2.0, 2.0]
    assert agent.num_updates == 80
    returns = evaluate_sac(agent, dot_factory(), 3, seed=1, frame_stack=2)
    assert returns.shape == (3,) and np.all(returns < 0)
    # A finished run is not run again.
    again = train_sac(cfg, dot_factory())
    assert again.num_updates == 80 and again.wall_seconds == 0.0


def test_crash_and_resume(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = dataclasses.replace(TINY, run_dir=str(tmp_path / "run"), total_env_steps=160)
    with pytest.raises(Crash):
        train_sac(cfg, dot_factory(crash_after_steps=50))  # 100 agent steps, ckpt at 80
    run = Path(cfg.run_dir)
    ckpt = latest_checkpoint(run / "checkpoints")
    assert ckpt is not None and ckpt.name.endswith("80")
    saved = json.loads((ckpt / "meta.json").read_text())
    assert saved["num_updates"] == 40
    with caplog.at_level(logging.WARNING):
        result = train_sac(cfg, dot_factory())
    assert f"resumed {run} at 80 env steps" in caplog.text
    assert result.env_steps == 160
    # 40 updates before the checkpoint + 80 after (the replay was restored: no new warm-up).
    assert result.num_updates == 120
    steps = [r["env_steps"] for r in _records(run, "eval")]
    assert steps == sorted(steps) and len(steps) == len(set(steps))


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="init_encoder_from"):
        train_sac(dataclasses.replace(TINY, run_dir=str(tmp_path), freeze_encoder=True),
                  dot_factory())
    cfg = dataclasses.replace(TINY, run_dir=str(tmp_path / "r"))
    train_sac(dataclasses.replace(cfg, total_env_steps=41), dot_factory())
    with pytest.raises(RunConflictError, match="total_env_steps"):
        train_sac(cfg, dot_factory())


def test_pretrained_frozen_encoder_is_loaded_and_kept(tmp_path: Path) -> None:
    from rltransfer.transfer.encoder import save_encoder

    enc = PixelEncoder(TINY.encoder, (6, 24, 24))
    path = save_encoder(enc, tmp_path / "enc", (6, 24, 24), "inverse_dynamics")
    cfg = dataclasses.replace(TINY, run_dir=str(tmp_path / "run"), init_encoder_from=str(path),
                              freeze_encoder=True, total_env_steps=80)
    train_sac(cfg, dot_factory())
    agent, _ = load_sac_agent(Path(cfg.run_dir) / "final")
    for (k, v), (k2, v2) in zip(enc.convs.state_dict().items(),
                                agent.encoder.convs.state_dict().items(), strict=True):
        assert k == k2
        np.testing.assert_array_equal(v.numpy(), v2.numpy())
    assert agent.encoder_frozen
    # The target encoder starts from the pretrained convs too (and, frozen, stays there).
    for v, v2 in zip(enc.convs.state_dict().values(),
                     agent.encoder_target.convs.state_dict().values(), strict=True):
        np.testing.assert_array_equal(v.numpy(), v2.numpy())


def _dmc_available() -> bool:
    try:
        from rltransfer.envs import env_spec

        return env_spec("DMC/reacher-easy").frame_stack == 3
    except Exception:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _dmc_available(), reason="envs/dmc.py not wired into make_env yet")
def test_dmc_reacher_smoke_with_kill_and_resume(tmp_path: Path) -> None:
    """A few hundred agent steps of pixel SAC on DMC reacher-easy, SIGKILLed after its first
    checkpoint and resumed."""
    run_dir = tmp_path / "run"
    code = (
        "import logging, sys; logging.basicConfig(level=logging.WARNING)\n"
        "from rltransfer.train_sac import SACTrainConfig, train_sac\n"
        "from rltransfer.agents.sac import SACConfig\n"
        "from rltransfer.nets.pixel_encoders import PixelEncoderConfig\n"
        f"cfg = SACTrainConfig(env_id='DMC/reacher-easy', run_dir={str(run_dir)!r},\n"
        "    total_env_steps=200, warmup_env_steps=50, eval_every_env_steps=200,\n"
        "    eval_episodes=1, checkpoint_every_env_steps=100, replay_capacity_env_steps=1000,\n"
        "    render_size=64, progress=False, tensorboard=False,\n"
        "    agent=SACConfig(hidden_dim=64, batch_size=16),\n"
        "    encoder=PixelEncoderConfig(num_filters=8, feature_dim=16))\n"
        "r = train_sac(cfg); print('DONE', r.env_steps, r.num_updates, r.final_return_mean)\n"
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 150
    while time.time() < deadline and latest_checkpoint(run_dir / "checkpoints") is None:
        if proc.poll() is not None:
            out = proc.stdout.read().decode() if proc.stdout else ""
            pytest.fail(f"run ended before its first checkpoint:\n{out}")
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    assert ckpt is not None and not (run_dir / "final").exists()
    saved = json.loads((ckpt / "meta.json").read_text())
    assert saved["env_steps"] == 100
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resumed {run_dir} at 100 env steps" in done.stderr
    final = json.loads((run_dir / "final" / "meta.json").read_text())
    assert final["env_steps"] == 200 and final["num_updates"] == 150
    evals = _records(run_dir, "eval")
    assert evals[-1]["env_steps"] == 200 and np.isfinite(evals[-1]["return_mean"])
