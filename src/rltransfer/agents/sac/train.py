"""Pixel SAC training loop on DeepMind Control: collect, learn, evaluate, checkpoint, resume.

The loop of Kadavath et al. 2021 (code built on PAD, Hansen et al. 2021), see REFERENCE.md:
``learning_starts_env_steps`` (1000) uniformly random actions, then, at the step the warm-up
ends, a burst of ``learning_starts_env_steps`` updates at once, then one SAC update per agent
step (``updates_per_env_step``), deterministic evaluation every ``eval_every_env_steps`` (10k)
agent steps over ``eval_episodes`` (10) episodes. "Env steps" here are **agent steps** (one action,
repeated ``action_repeat`` times by the env: frames = env steps x action repeat).

Observations are single RGB frames ``uint8[B, 3, H, W]``; the agent sees the last
``frame_stack`` (3) frames stacked (``FrameStacker``), and replay stores each frame once
(``TransitionReplay`` with float actions, uniform, n-step ``agent.n_step``).

A run directory holds ``config.json``, ``metrics.jsonl`` (``episode``, ``train``, ``eval``
records), ``tb/``, ``checkpoints/step_*`` (agent + optimizer + replay + RNG state: a killed run
resumes from the latest one when started again with the same directory), and ``final/`` (the
trained agent, loadable with :func:`load_sac_agent`). A finished run is not run again.

Encoder transfer: ``init_encoder_from`` loads a pretrained encoder checkpoint
(:func:`rltransfer.methods.encoder_pretraining.transfer.load_pretrained_encoder`) into the
critic's encoder (whose convs the actor shares), optionally frozen (``freeze_encoder``), then
copies it to the target.
The encoder's architecture and image geometry come from the checkpoint's metadata unless the
config sets them (:func:`~rltransfer.agents.sac.config.config_from_pretrained_encoder`).

Evaluation goes through the one protocol,
:func:`~rltransfer.evaluation.protocol.evaluate_policy`, with the agent wrapped as a
continuous-action policy (:class:`SACPolicy`: deterministic ``tanh(mu)``, centre crop, the
env's action bounds).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.spaces import Box
from gymnasium.vector import VectorEnv

from rltransfer.agents.sac.config import (
    SACConfig,
    SACTrainConfig,
    config_from_pretrained_encoder,
    resolved_render_size,
    sac_env_kwargs,
)
from rltransfer.agents.sac.learner import SACAgent
from rltransfer.core.checkpoint import CheckpointError, load_checkpoint, read_meta
from rltransfer.core.config import ConfigError, from_dict, to_dict
from rltransfer.core.episodes import EpisodeTracker
from rltransfer.core.loop import TrainingLoop, sub_tensors
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.run import RunResult, closes_envs_on_failure
from rltransfer.core.run_dir import RunConflictError, prepare_run_dir
from rltransfer.core.schedule import LoopSchedule, ReplayRatio
from rltransfer.evaluation.protocol import eval_env_kwargs, evaluate_policy
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig
from rltransfer.replay import FrameStacker, TransitionReplay

EnvFactory = Callable[[int, int], VectorEnv]
"""``(num_envs, seed) -> VectorEnv`` following the DMC contract (uint8 ``[B, C, H, W]`` frames,
Box actions, NEXT_STEP autoreset, ``info["task_reward"]``)."""


def default_env_factory(cfg: SACTrainConfig,
                        env_kwargs: dict[str, Any] | None = None) -> EnvFactory:
    """``make_env(cfg.env_id, n, seed, **env_kwargs)``; ``env_kwargs`` defaults to
    :func:`sac_env_kwargs` (the training env; pass ``eval_env_kwargs(sac_env_kwargs(cfg))``
    for the evaluation env)."""
    from rltransfer.envs import make_env

    kwargs = sac_env_kwargs(cfg) if env_kwargs is None else dict(env_kwargs)

    def build(num_envs: int, seed: int) -> VectorEnv:
        return make_env(cfg.env_id, num_envs, seed, **kwargs)

    return build


def to_env_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Map agent actions in ``[-1, 1]`` to the env's Box ``[low, high]`` (float32, same shape)."""
    return (low + (np.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (high - low)).astype(np.float32)


class SACPolicy:
    """A pixel SAC agent as a :class:`~rltransfer.core.policy.ContinuousPolicy`, for
    :func:`~rltransfer.evaluation.protocol.evaluate_policy`.

    Acts with the deterministic policy ``tanh(mu)`` (:meth:`SACAgent.act` with
    ``deterministic=True``; with ``"crop"`` augmentation the agent centre-crops), mapped from
    ``[-1, 1]`` to the env's ``[low, high]`` by :func:`to_env_action` as in training, then
    clipped to ``[low, high]`` (a no-op except for float32 rounding at the bounds).
    Stateless.

    Args:
        agent: the SAC agent; its observations are ``uint8[B, C*S, H, W]`` stacked frames.
        action_low, action_high: the env's ``Box`` bounds (the action's shape; their size
            must be ``agent.action_dim``).

    Raises:
        ValueError: bounds of different shapes, or of a size other than ``agent.action_dim``.
    """

    def __init__(self, agent: SACAgent, action_low: np.ndarray, action_high: np.ndarray
                 ) -> None:
        self.agent = agent
        self.action_low = np.asarray(action_low, np.float32)
        self.action_high = np.asarray(action_high, np.float32)
        if self.action_low.shape != self.action_high.shape:
            raise ValueError(f"action bounds of shapes {self.action_low.shape} and "
                             f"{self.action_high.shape}")
        if self.action_low.size != agent.action_dim:
            raise ValueError(f"the agent has {agent.action_dim} action dimensions, the bounds "
                             f"{self.action_low.size}")
        self.action_shape: tuple[int, ...] = tuple(int(d) for d in self.action_low.shape)

    def reset(self, num_envs: int) -> None:
        return None

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        """``float32[B, *action_shape]`` env actions for ``obs`` ``uint8[B, C*S, H, W]``."""
        action = self.agent.act(obs, deterministic=True)
        action = action.reshape((action.shape[0], *self.action_shape))
        env_action = to_env_action(action, self.action_low, self.action_high)
        return np.clip(env_action, self.action_low, self.action_high), None


class SACTrainer(TrainingLoop):
    """Owns the envs, SAC agent and replay of one run.

    Args:
        cfg: the run's :class:`SACTrainConfig`.
        env_factory: ``(num_envs, seed) -> VectorEnv``; default :func:`default_env_factory`
            (``make_env`` on ``cfg.env_id``). Tests pass tiny envs here.

    Raises:
        ConfigError: inconsistent config. RunConflictError: the run dir holds another run.
        EncoderMismatchError / CheckpointError: ``init_encoder_from`` does not fit (see
            :func:`config_from_pretrained_encoder`).
        ConfigError: the env is not a pixel env with Box actions.
    """

    @closes_envs_on_failure
    def __init__(self, cfg: SACTrainConfig, env_factory: EnvFactory | None = None) -> None:
        cfg.validate()
        cfg = config_from_pretrained_encoder(cfg)
        # Nothing is written to the run dir before the env and init encoder are validated.
        self.open_run(cfg)
        self.make_envs = env_factory or default_env_factory(cfg)
        # Evaluation: the training env except the protocol's differences (a factory given by
        # the caller builds both).
        self.make_eval_envs = env_factory or default_env_factory(
            cfg, eval_env_kwargs(sac_env_kwargs(cfg)))
        self.envs = self.make_envs(cfg.num_envs, cfg.seed)
        shape = self.envs.single_observation_space.shape
        space = self.envs.single_action_space
        if shape is None or len(shape) != 3 or not isinstance(space, Box):
            raise ConfigError(
                f"{cfg.env_id}: pixel SAC needs uint8 [C, H, W] frames and Box actions, got "
                f"observations {shape} and actions {space}"
            )
        self.frame_shape: tuple[int, int, int] = (int(shape[0]), int(shape[1]), int(shape[2]))
        if cfg.frame_stack is not None:
            self.frame_stack = int(cfg.frame_stack)
        else:
            from rltransfer.envs import env_spec

            try:
                self.frame_stack = int(env_spec(cfg.env_id).frame_stack)
            except ValueError:
                self.frame_stack = 3
        self.action_low = np.asarray(space.low, np.float32)
        self.action_high = np.asarray(space.high, np.float32)
        self.action_dim = int(np.prod(self.action_low.shape))
        c, h, w = self.frame_shape
        self.obs_shape = (c * self.frame_stack, h, w)
        self.agent = SACAgent(cfg.agent, self.obs_shape, self.action_dim, cfg.encoder,
                              device=cfg.device, seed=cfg.seed)
        self.loaded_encoder_tensors: list[str] = []
        if cfg.init_encoder_from is not None:
            from rltransfer.methods.encoder_pretraining.transfer import load_pretrained_encoder

            if not isinstance(self.agent.encoder, PixelEncoder):
                raise ConfigError("init_encoder_from needs pixel observations")
            self.loaded_encoder_tensors = load_pretrained_encoder(
                self.agent.encoder, cfg.init_encoder_from,
                freeze=cfg.freeze_encoder, include_head=cfg.init_encoder_head,
            )
            if cfg.freeze_encoder:
                self.agent.set_encoder_frozen(True, include_head=cfg.init_encoder_head)
            self.agent.sync_targets()
        capacity = max(1, cfg.replay_capacity_env_steps // cfg.num_envs)
        self.replay = TransitionReplay(
            num_envs=cfg.num_envs, capacity_per_env=capacity, frame_shape=self.frame_shape,
            frame_stack=self.frame_stack, n_step=cfg.agent.n_step, gamma=cfg.agent.gamma,
            prioritized=False, action_shape=(self.action_dim,), action_dtype=np.float32,
        )
        self.stacker = FrameStacker(cfg.num_envs, self.frame_shape, self.frame_stack)
        self.episode_tracker = EpisodeTracker(cfg.num_envs)
        # Steps taken at agent-step counts >= learning_starts_env_steps are followed by
        # updates (PAD: ``if step >= init_steps: agent.update``), i.e. the loop's count after
        # the vector step is >= warmup + B. The first such step does a burst of
        # learning_starts_env_steps updates in place of one agent step's update (PAD:
        # ``num_updates = init_steps if step == init_steps else 1``): with one env,
        # num_updates = env_steps - 1 from then on, as in PAD.
        self.init_loop(LoopSchedule.from_config(
            cfg, ReplayRatio(cfg.updates_per_env_step, 1),
            cfg.learning_starts_env_steps + cfg.num_envs,
            warmup_burst_env_steps=max(cfg.learning_starts_env_steps - 1, 0), recent_episodes=10,
        ), tensorboard=cfg.tensorboard)
        prepare_run_dir(cfg, cfg.run_dir)

    # ------------------------------------------------------------------ checkpoints
    def architecture(self) -> dict[str, Any]:
        """What a reader needs to rebuild the agent (see :func:`load_sac_agent`)."""
        return {
            "kind": "sac",
            "env_id": self.cfg.env_id,
            "obs_shape": list(self.obs_shape),
            "frame_shape": list(self.frame_shape),
            "frame_stack": self.frame_stack,
            "action_dim": self.action_dim,
            "action_low": self.action_low.tolist(),
            "action_high": self.action_high.tolist(),
            "action_repeat": self.cfg.action_repeat,
            "render_size": resolved_render_size(self.cfg),
            "agent_config": to_dict(self.cfg.agent),
            "encoder_config": to_dict(self.cfg.encoder),
        }

    def final_tensors(self) -> dict[str, Any]:
        """The trained agent (``agent/``, loadable with :func:`load_sac_agent`)."""
        return {f"agent/{k}": v for k, v in self.agent.state_tensors().items()}

    def checkpoint_meta(self, final: bool) -> dict[str, Any]:
        return {"agent_state": self.agent.state_meta()}

    def state_tensors(self) -> dict[str, Any]:
        """The agent (networks, optimizers, counters) and its sampling generator."""
        tensors = self.final_tensors()
        tensors["rng/agent"] = self.agent.generator.get_state()
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor],
                           meta: dict[str, Any]) -> None:
        self.agent.load_state_tensors(sub_tensors(tensors, "agent/"), meta["agent_state"])
        if "rng/agent" in tensors:
            self.agent.generator.set_state(tensors["rng/agent"].to(torch.uint8))

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, logger: MetricsLogger) -> float:
        """Deterministic evaluation (``eval_episodes`` episodes) on the training env's settings
        (:func:`~rltransfer.evaluation.protocol.eval_env_kwargs`); logs an ``eval`` record."""
        # 5 envs: the count SAC's evaluation has always used (fixed-seed runs unchanged).
        returns = evaluate_policy(
            SACPolicy(self.agent, self.action_low, self.action_high), self.cfg.env_id,
            self.cfg.eval_episodes, seed=self.cfg.seed + 1_000_003 + self.env_steps,
            frame_stack=self.frame_stack, num_envs=5, make_envs=self.make_eval_envs,
        )
        self.last_eval_return = float(np.mean(returns))
        logger.log("eval", self.env_steps, return_mean=self.last_eval_return,
                   return_std=float(np.std(returns)), returns=[float(r) for r in returns],
                   num_updates=self.num_updates)
        return self.last_eval_return

    # ------------------------------------------------------------------ acting, learning
    def start_collecting(self) -> None:
        self._obs, _ = self.envs.reset(seed=self.cfg.seed + 31 * self.env_steps)
        self.episode_tracker.reset()
        self.replay.begin_stream()
        self.stacker.reset()

    def collect_step(self, logger: MetricsLogger) -> None:
        """One agent step of every env: uniform actions during the warm-up, else the
        policy's sample; the transition goes to replay."""
        cfg = self.cfg
        stacked = self.stacker.push(self._obs, self.episode_tracker.first)
        if self.env_steps < cfg.learning_starts_env_steps:
            action = self.rng.uniform(-1.0, 1.0, (cfg.num_envs, self.action_dim)
                                      ).astype(np.float32)
        else:
            action = self.agent.act(stacked)
        next_obs, _, terminated, truncated, info = self.envs.step(
            to_env_action(action, self.action_low, self.action_high)
        )
        terminated = np.asarray(terminated, bool)
        truncated = np.asarray(truncated, bool)
        reward = np.asarray(info["task_reward"], dtype=np.float64)
        self.replay.add(self._obs, action, None, None, reward, terminated, truncated)
        returns, lengths = self.episode_tracker.record(reward, terminated, truncated)
        self._log_episodes(logger, returns, lengths, step=self.env_steps + cfg.num_envs)
        self._obs = next_obs

    def update(self) -> dict[str, float]:
        """One SAC update from a uniform replay batch."""
        return self.agent.update(self.replay.sample(self.cfg.agent.batch_size, self.rng)).metrics


def train_sac(cfg: SACTrainConfig, env_factory: EnvFactory | None = None) -> RunResult:
    """Run (or resume) one pixel-SAC training run to completion; see :class:`SACTrainer`."""
    return SACTrainer(cfg, env_factory).run()


def load_sac_agent(path: str | Path, device: str = "cpu") -> tuple[SACAgent, dict[str, Any]]:
    """Rebuild the agent saved in a run's ``final/`` (or any ``checkpoints/step_*``).

    Returns:
        ``(agent, architecture)``; ``architecture`` has ``obs_shape``, ``frame_stack``,
        ``action_low`` / ``action_high`` (map actions with :func:`to_env_action`), ...

    Raises:
        CheckpointError: missing or corrupt checkpoint, or not a SAC checkpoint.
    """
    meta = read_meta(path)
    arch = meta.get("architecture", {})
    if arch.get("kind") != "sac":
        raise CheckpointError(f"{path} is not a SAC checkpoint (kind {arch.get('kind')!r})")
    tensors, _ = load_checkpoint(path)
    agent = SACAgent(
        from_dict(SACConfig, arch["agent_config"]), tuple(arch["obs_shape"]),
        int(arch["action_dim"]), from_dict(PixelEncoderConfig, arch["encoder_config"]),
        device=device,
    )
    agent.load_state_tensors(
        {k[len("agent/"):]: v for k, v in tensors.items() if k.startswith("agent/")},
        meta.get("agent_state"),
    )
    return agent, arch


__all__ = [
    "EnvFactory",
    "RunConflictError",
    "SACPolicy",
    "SACTrainer",
    "default_env_factory",
    "load_sac_agent",
    "to_env_action",
    "train_sac",
]
