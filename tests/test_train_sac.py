"""Pixel SAC training loop end to end: a tiny pixel env, crash + resume, DMC smoke run."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, VectorEnv

from rltransfer.agents.sac.config import SACConfig, SACTrainConfig
from rltransfer.agents.sac.train import (
    RunConflictError,
    SACPolicy,
    load_sac_agent,
    to_env_action,
    train_sac,
)
from rltransfer.core.checkpoint import latest_checkpoint
from rltransfer.core.config import ConfigError
from rltransfer.core.types import UpdateResult
from rltransfer.envs.wrappers import TaskRewardInfo
from rltransfer.evaluation.protocol import evaluate_policy
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig
from tests.helpers import kill_at_first_checkpoint


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
    env_id="Dot", num_envs=2, total_env_steps=120, frame_stack=2, learning_starts_env_steps=40,
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
    # Warm-up of 40 steps; the first step after it bursts 40 updates in place of its one
    # (PAD), then one per agent step: 40 + 79 = 119 = env_steps - 1.
    assert result.num_updates == 119
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
    assert agent.num_updates == 119
    policy = SACPolicy(agent, np.array(arch["action_low"]), np.array(arch["action_high"]))
    assert policy.action_shape == (2,)
    returns = evaluate_policy(policy, "dot", 3, seed=1, frame_stack=2, make_envs=dot_factory())
    assert returns.shape == (3,) and np.all(returns < 0)
    # A finished run is not run again.
    again = train_sac(cfg, dot_factory())
    assert again.num_updates == 119 and again.wall_seconds == 0.0


def test_warmup_end_bursts_warmup_updates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """PAD's update schedule: no update during the warm-up, ``learning_starts_env_steps`` updates at
    the step it ends, then one per agent step. Counted per env step with one env."""
    from rltransfer.agents.sac.learner import SACAgent
    from rltransfer.agents.sac.train import SACTrainer

    cfg = dataclasses.replace(TINY, run_dir=str(tmp_path / "run"), num_envs=1,
                              total_env_steps=30, learning_starts_env_steps=20,
                              eval_every_env_steps=1000, checkpoint_every_env_steps=1000)
    calls: list[int] = []

    def counting_update(self: SACAgent, batch: dict[str, Any]) -> UpdateResult:
        calls.append(trainer.env_steps)
        return UpdateResult()

    trainer = SACTrainer(cfg, dot_factory())
    monkeypatch.setattr(SACAgent, "update", counting_update)
    trainer.run()
    per_step = {t: calls.count(t) for t in sorted(set(calls))}
    # env_steps is counted after the step is taken: steps 1..20 are the warm-up (no
    # update); the step taken at agent step 20 (env_steps 21) bursts 20 updates; steps
    # 22..30 do 1 each. Total 29 = 30 - 1 (PAD: update count = step index).
    assert per_step == {21: 20, **{t: 1 for t in range(22, 31)}}
    assert len(calls) == 29 == trainer.num_updates
    # With updates_per_env_step 2 both the burst and the regular updates double.
    calls.clear()
    cfg2 = dataclasses.replace(cfg, run_dir=str(tmp_path / "run2"), updates_per_env_step=2.0)
    trainer = SACTrainer(cfg2, dot_factory())
    trainer.run()
    assert {t: calls.count(t) for t in sorted(set(calls))} == {
        21: 40, **{t: 2 for t in range(22, 31)}}


def test_crash_and_resume(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = dataclasses.replace(TINY, run_dir=str(tmp_path / "run"), total_env_steps=160)
    with pytest.raises(Crash):
        train_sac(cfg, dot_factory(crash_after_steps=50))  # 100 agent steps, ckpt at 80
    run = Path(cfg.run_dir)
    ckpt = latest_checkpoint(run / "checkpoints")
    assert ckpt is not None and ckpt.name.endswith("80")
    saved = json.loads((ckpt / "meta.json").read_text())
    assert saved["num_updates"] == 79  # burst 40 at step 40, then 39 more up to step 80
    with caplog.at_level(logging.WARNING):
        result = train_sac(cfg, dot_factory())
    assert f"resumed {run} at 80 env steps" in caplog.text
    assert result.env_steps == 160
    # 79 updates before the checkpoint + 80 after (the replay was restored: no new warm-up
    # and no second burst).
    assert result.num_updates == 159
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
    from rltransfer.methods.encoder_pretraining.transfer import save_encoder

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


def mujoco_gl_unavailable() -> str | None:
    """Why the DMC smoke test cannot run here, or ``None``. Only two causes skip it: the
    optional ``dmc`` extra (dm_control, mujoco) is not installed, or MuJoCo's headless GL
    backend (``MUJOCO_GL``, egl by default) cannot make a context on this machine
    (``ImportError`` / ``OSError`` / ``RuntimeError`` from ``mujoco.egl`` / ``mujoco.osmesa``,
    e.g. no libEGL or no EGL device). Any other failure to build the env fails the test."""
    import importlib.util

    missing = [m for m in ("dm_control", "mujoco") if importlib.util.find_spec(m) is None]
    if missing:
        return f"optional extra 'dmc' not installed (missing {', '.join(missing)})"
    from rltransfer.envs.dmc import ensure_headless_gl

    backend = ensure_headless_gl()
    try:
        if backend == "egl":
            from mujoco.egl import GLContext
        elif backend == "osmesa":
            from mujoco.osmesa import GLContext
        else:
            from mujoco import GLContext
        context = GLContext(16, 16)
        context.make_current()
        context.free()
    except (ImportError, OSError, RuntimeError) as error:
        return f"MuJoCo GL backend {backend!r} unavailable: {error}"
    return None


@pytest.mark.slow
def test_dmc_reacher_smoke_with_kill_and_resume(tmp_path: Path) -> None:
    """A few hundred agent steps of pixel SAC on DMC reacher-easy, SIGKILLed after its first
    checkpoint and resumed."""
    reason = mujoco_gl_unavailable()
    if reason is not None:
        pytest.skip(reason)
    run_dir = tmp_path / "run"
    code = (
        "import logging, sys; logging.basicConfig(level=logging.WARNING)\n"
        "from rltransfer.agents.sac.train import train_sac\n"
        "from rltransfer.agents.sac.config import SACConfig, SACTrainConfig\n"
        "from rltransfer.nets.pixel_encoders import PixelEncoderConfig\n"
        f"cfg = SACTrainConfig(env_id='DMC/reacher-easy', run_dir={str(run_dir)!r},\n"
        "    total_env_steps=200, learning_starts_env_steps=50, eval_every_env_steps=200,\n"
        "    eval_episodes=1, checkpoint_every_env_steps=100, replay_capacity_env_steps=1000,\n"
        "    render_size=64, progress=False, tensorboard=False,\n"
        "    agent=SACConfig(hidden_dim=64, batch_size=16),\n"
        "    encoder=PixelEncoderConfig(num_filters=8, feature_dim=16))\n"
        "r = train_sac(cfg); print('DONE', r.env_steps, r.num_updates, r.final_return_mean)\n"
    )
    saved = kill_at_first_checkpoint([sys.executable, "-c", code], run_dir, timeout_s=150)
    assert saved["env_steps"] == 100
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"resumed {run_dir} at 100 env steps" in done.stderr
    final = json.loads((run_dir / "final" / "meta.json").read_text())
    # one env: warm-up 50, a burst of 50 at step 50, one update per step after: 199.
    assert final["env_steps"] == 200 and final["num_updates"] == 199
    evals = _records(run_dir, "eval")
    assert evals[-1]["env_steps"] == 200 and np.isfinite(evals[-1]["return_mean"])
