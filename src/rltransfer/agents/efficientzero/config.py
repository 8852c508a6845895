"""EfficientZero's configs: the learner's hyperparameters (:class:`EfficientZeroConfig`), one
run (:class:`EZTrainConfig`, checked by its ``validate()``), and the schedules they define
(learning rate, action-sampling temperature, importance exponent).

Sources: EfficientZero (Ye et al. 2021, Appendix; public code's defaults), XTRA (Xu et al.
2023, Table 4). The learning-rate schedule: ``lr * (u + 1) / warmup`` for update
``u < warmup`` (EZ uses ``u / warmup``, which wastes the first update), then
``lr * decay_rate ** floor((u - warmup) / interval)``: 0.2 for the paper's 100k updates, then
0.02.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from rltransfer.agents.efficientzero.losses import LossWeights
from rltransfer.agents.efficientzero.mcts import MCTSConfig
from rltransfer.agents.efficientzero.networks import (
    EfficientZeroNet,
    WorldModelConfig,
    world_model_preset,
)
from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig
from rltransfer.core.checkpoint_components import check_component_names
from rltransfer.core.config import ConfigError, RunConfig
from rltransfer.envs import env_spec

__all__ = [
    "AUGMENTATIONS",
    "RESUMABLE_ON_ANOTHER_BACKEND",
    "EZTrainConfig",
    "EfficientZeroConfig",
    "ez_env_kwargs",
    "ez_net_config",
    "importance_exponent_at",
    "learning_rate_at",
    "temperature_at",
]

AUGMENTATIONS: tuple[str, ...] = ("none", "shift_intensity")
"""Values of :attr:`EfficientZeroConfig.augmentation`."""


@dataclass
class EfficientZeroConfig:
    """Learner hyperparameters (defaults: EfficientZero / XTRA Table 4, Atari).

    Attributes:
        unroll_steps: ``K`` model steps unrolled per sample (5).
        td_steps: n of the n-step value targets (5; used by replay/reanalysis).
        discount: per agent step (0.997^4 for Atari with frame skip 4).
        value_prefix_horizon: the reward LSTM is reset every this many unroll steps (5).
        value_prefix_loss_coef / policy_loss_coef / value_loss_coef / consistency_loss_coef:
            1.0 / 1.0 / 0.25 / 2.0 (EZ Eq. 5: lambda_r, lambda_1, lambda_2, lambda_3).
        lr: peak SGD learning rate (0.2).
        lr_warmup_updates: linear warm-up length in updates (1000, EZ code).
        lr_decay_rate / lr_decay_interval_updates: step decay, lr *= rate every interval
            updates after warm-up (0.1 every 100k: 0.2 -> 0.02).
        momentum / weight_decay: SGD (0.9 / 1e-4).
        max_grad_norm: global gradient-norm clip (5).
        target_update_interval_updates: target network copied every this many updates (200).
        latent_grad_scale: gradient scale of the latent between unroll steps (0.5, MuZero).
        gradient_scale_mode: ``"efficientzero"`` or ``"muzero"``
            (:mod:`~rltransfer.agents.efficientzero.losses`).
        priority_eps: added to ``|v_0 - z_0|`` for the new priorities (1e-6).
        augmentation: ``"shift_intensity"`` (public EfficientZero default: random shift +
            intensity noise on the observations and the consistency targets, see the module
            docstring) or ``"none"``. Applied only when ``consistency_loss_coef > 0``, as in
            EZ. ``ez-small`` turns it off (MinAtar's 10x10 frames; ``docs/decisions.md``).
        augmentation_shift_pad: replicate padding of the shift, pixels per side (4).
        augmentation_intensity_scale: std of the multiplicative intensity noise (0.05).
    """

    unroll_steps: int = 5
    td_steps: int = 5
    discount: float = 0.997**4
    value_prefix_horizon: int = 5
    value_prefix_loss_coef: float = 1.0
    policy_loss_coef: float = 1.0
    value_loss_coef: float = 0.25
    consistency_loss_coef: float = 2.0
    lr: float = 0.2
    lr_warmup_updates: int = 1000
    lr_decay_rate: float = 0.1
    lr_decay_interval_updates: int = 100_000
    momentum: float = 0.9
    weight_decay: float = 1e-4
    max_grad_norm: float = 5.0
    target_update_interval_updates: int = 200
    latent_grad_scale: float = 0.5
    gradient_scale_mode: Literal["efficientzero", "muzero"] = "efficientzero"
    priority_eps: float = 1e-6
    augmentation: Literal["none", "shift_intensity"] = "shift_intensity"
    augmentation_shift_pad: int = 4
    augmentation_intensity_scale: float = 0.05

    @property
    def augments(self) -> bool:
        """Whether updates augment observations (switch on and consistency loss on)."""
        return self.augmentation != "none" and self.consistency_loss_coef > 0

    @property
    def loss_weights(self) -> LossWeights:
        """The four ``*_loss_coef`` as the losses' :class:`LossWeights` (EZ Eq. 5)."""
        return LossWeights(value_prefix=self.value_prefix_loss_coef,
                           policy=self.policy_loss_coef, value=self.value_loss_coef,
                           consistency=self.consistency_loss_coef)

    def __post_init__(self) -> None:
        problems = []
        for name in ("unroll_steps", "td_steps", "value_prefix_horizon",
                     "lr_decay_interval_updates", "target_update_interval_updates"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if self.lr_warmup_updates < 0:
            problems.append(f"lr_warmup_updates must be >= 0 (got {self.lr_warmup_updates})")
        if not 0.0 < self.discount <= 1.0:
            problems.append(f"discount must be in (0, 1] (got {self.discount})")
        for name in ("value_prefix_loss_coef", "policy_loss_coef", "value_loss_coef",
                     "consistency_loss_coef", "weight_decay", "priority_eps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be finite and >= 0 (got {value})")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr must be > 0 (got {self.lr})")
        if not 0.0 < self.lr_decay_rate <= 1.0:
            problems.append(f"lr_decay_rate must be in (0, 1] (got {self.lr_decay_rate})")
        if not 0.0 <= self.momentum < 1.0:
            problems.append(f"momentum must be in [0, 1) (got {self.momentum})")
        if not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm must be > 0 (got {self.max_grad_norm})")
        if not 0.0 < self.latent_grad_scale <= 1.0:
            problems.append(f"latent_grad_scale must be in (0, 1] (got {self.latent_grad_scale})")
        if self.gradient_scale_mode not in ("efficientzero", "muzero"):
            problems.append(
                f"gradient_scale_mode must be 'efficientzero' or 'muzero' "
                f"(got {self.gradient_scale_mode!r})"
            )
        if self.augmentation not in AUGMENTATIONS:
            problems.append(f"augmentation must be one of {list(AUGMENTATIONS)} "
                            f"(got {self.augmentation!r})")
        if int(self.augmentation_shift_pad) < 0:
            problems.append(
                f"augmentation_shift_pad must be >= 0 (got {self.augmentation_shift_pad})")
        if not (math.isfinite(self.augmentation_intensity_scale)
                and 0.0 <= self.augmentation_intensity_scale < 0.5):
            problems.append("augmentation_intensity_scale must be in [0, 0.5) (got "
                            f"{self.augmentation_intensity_scale})")
        if problems:
            raise ConfigError("EfficientZeroConfig: " + "; ".join(problems))


def learning_rate_at(config: EfficientZeroConfig, num_updates: int) -> float:
    """SGD learning rate for update number ``num_updates`` (0-based), see module docstring.

    E.g. defaults: update 0 -> 0.0002, 999 -> 0.2, 100_999 -> 0.2, 101_000 -> 0.02.
    """
    if num_updates < config.lr_warmup_updates:
        return config.lr * (num_updates + 1) / config.lr_warmup_updates
    steps = (num_updates - config.lr_warmup_updates) // config.lr_decay_interval_updates
    return config.lr * config.lr_decay_rate**steps


@dataclass
class EZTrainConfig(RunConfig):
    """One EfficientZero run (defaults: a small MinAtar run; presets in
    :mod:`rltransfer.experiments.efficientzero`); the run-level fields are
    :class:`~rltransfer.core.config.RunConfig`'s.

    Attributes:
        env_id: ``ALE/<Game>-v5`` or ``MinAtar/<Game>-v1`` (any id ``make_env`` knows).
        num_envs: ``B`` games stepped together (one batched search per env step).
        total_env_steps: env steps of all envs together (EZ Atari100k: 100k agent steps).
        seed: seed of envs, networks, search noise and sampling.
        run_dir: run directory (resumed if it holds this run).
        frame_stack: frames per observation (None = the suite's default; EZ Atari: 4).
        frame_size: ALE only: square frame size passed to ``make_env`` (EZ: 96; None = the
            suite default).
        grayscale: ALE only: grayscale frames (EZ: False, RGB; None = the suite default).
        sticky_action_prob: sticky actions (None = the suite default; EZ: 0).
        terminal_on_life_loss: Atari training episodes end at each life loss (EZ: True);
            evaluation never does.
        max_episode_frames: episode cap (Atari: emulator frames, EZ 108k).
        clip_rewards: the learner sees ``sign(r)`` (Atari reward clipping); returns logged
            and evaluated are unclipped.
        net_preset: world-model size preset (``"small"`` for MinAtar-sized inputs,
            ``"atari"`` for the paper's 96x96 network, ``"atari-l"`` with 4 representation
            blocks as in XTRA); see
            :func:`~rltransfer.agents.efficientzero.networks.world_model_preset`.
        mcts: search settings (``num_simulations`` etc.); ``discount`` and
            ``value_prefix_horizon`` must match the learner's (default: EZ's search with the
            learner's default discount 0.997^4 per agent step).
        learner: learner hyperparameters (unroll steps, TD steps, discount, losses, SGD;
            the default has ``augmentation="none"``, as these defaults are a MinAtar run;
            ``ez-atari100k`` turns EZ's shift + intensity augmentation on).
        reanalyse: target reanalysis settings.
        replay_capacity_env_steps: replay size in env steps (all envs together).
        batch_size: positions per learner update (EZ: 256).
        updates_per_env_step: learner updates per env step (EZ Atari100k: 1).
        learning_starts_env_steps: env steps collected before the first update (EZ: 2000).
        random_warmup_actions: until the first learner update, act uniformly at random
            without a search and store a uniform policy target and root value 0 (the public
            EfficientZero self-play worker: uniform ``distributions`` before its start
            signal; its stored root value is that of the untrained network, 0 with the
            zero-initialised heads). Turn off when the network starts pretrained (the
            public XTRA code searches from the start when it loads a model).
        priority_exponent: alpha (EZ: 0.6).
        importance_exponent_start: beta at the start, annealed linearly to 1 (EZ: 0.4).
        temperatures: action-sampling temperatures of the three training phases.
        temperature_milestones: fractions of ``total_env_steps`` where the phases change.
        selfplay_update_interval_updates: updates between refreshes of the self-play network.
        eval_every_env_steps / eval_episodes: greedy evaluation (deterministic search, argmax
            of visit counts, no noise), on the unclipped game reward.
        checkpoint_every_env_steps / keep_checkpoints / checkpoint_replay: checkpointing
            (with the replay, resuming continues exactly; without it, learning restarts
            after another ``learning_starts_env_steps``).
        init_from: run directory or checkpoint directory of an EfficientZero run whose
            components start this run (a run dir resolves to its ``final/``, else its latest
            checkpoint), as XTRA (Xu et al. 2023) transfers h, h+g or h+g+f. The source
            must have the same network sizes and observation scale (and, for
            ``prediction``, the same number of actions).
        transfer: components loaded from ``init_from``, among ``representation``,
            ``dynamics``, ``prediction``, ``projection`` (online and target networks).
        freeze: components kept fixed during training (no SGD step; BatchNorm statistics
            kept); needs ``init_from``.
        action_space: ``None`` (the env's own actions) or a shared action space by name,
            ``"minatar-union"`` (MinAtar's 6 actions) or ``"atari-full"`` (ALE's 18), as XTRA
            (Xu et al. 2023) shares one network across games: the policy head and the
            dynamics action encoding have the union width, the search masks the game's
            illegal ids at every node, replay keeps local ids and local policies, learner
            batches get union ids and scattered policies
            (:mod:`~rltransfer.agents.efficientzero.shared_space`). Checkpoints record it.
        pad_channels: zero-pad every frame to this many channels at the network's input
            (MinAtar across games: 10, Seaquest's count); ``None``: the frames' own.
        device: torch device of the learner and the networks.
        torch_threads: ``torch.set_num_threads``.
        progress: rich progress bar; tensorboard: also write TensorBoard events.
        backend: ``local`` (self-play in this process) or ``ray``: ``num_actors`` Ray actor
            processes (:class:`~rltransfer.distributed.selfplay.SelfPlayWorker`) each play
            ``num_envs / num_actors`` of the games with a copy of the self-play network
            (refreshed by name as the local one is, every
            ``selfplay_update_interval_updates``) and send ``actor_chunk_steps`` vector steps
            per round to this process's replay and learner.
        num_actors / actor_chunk_steps: Ray actors and vector steps per actor per round.
        ray_address / ray_cpus_per_actor / ray_gpus_per_actor / ray_learner_gpus: as in
            :class:`~rltransfer.agents.r2d2.config.TrainConfig` (cluster to join, else
            ``RAY_ADDRESS``,
            else a local Ray; per-actor CPUs and GPU fraction; learner GPU reservation).
    """

    env_id: str = "MinAtar/Breakout-v1"
    num_envs: int = 8
    total_env_steps: int = 50_000
    run_dir: str = "runs/efficientzero"
    learning_starts_env_steps: int = 2_000
    updates_per_env_step: float = 1.0
    eval_episodes: int = 8
    frame_stack: int | None = None
    frame_size: int | None = None
    grayscale: bool | None = None
    sticky_action_prob: float | None = None
    terminal_on_life_loss: bool = False
    max_episode_frames: int = 108_000
    clip_rewards: bool = False
    net_preset: Literal["small", "atari", "atari-l"] = "small"
    mcts: MCTSConfig = field(default_factory=lambda: MCTSConfig(discount=0.997**4))
    learner: EfficientZeroConfig = field(
        default_factory=lambda: EfficientZeroConfig(augmentation="none"))
    reanalyse: ReanalyseConfig = field(default_factory=ReanalyseConfig)
    batch_size: int = 256
    random_warmup_actions: bool = True
    priority_exponent: float = 0.6
    importance_exponent_start: float = 0.4
    temperatures: tuple[float, float, float] = (1.0, 0.5, 0.25)
    temperature_milestones: tuple[float, float] = (0.5, 0.75)
    selfplay_update_interval_updates: int = 100
    init_from: str | None = None
    transfer: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()
    action_space: Literal["minatar-union", "atari-full"] | None = None
    pad_channels: int | None = None
    backend: Literal["local", "ray"] = "local"
    num_actors: int = 2
    actor_chunk_steps: int = 16
    ray_address: str | None = None
    ray_cpus_per_actor: float = 1.0
    ray_gpus_per_actor: float = 0.0
    ray_learner_gpus: float = 0.0

    def problems(self) -> list[str]:
        """The run-level problems (:meth:`RunConfig.problems`) and EfficientZero's: batch
        size, temperatures, search and learner discounts that differ, a Ray split that does
        not divide the envs, ALE-only settings on another suite, the shared action space,
        transfer / freeze without ``init_from``.

        Raises:
            UnknownComponentError: a name in ``transfer`` / ``freeze`` that is no component.
        """
        problems = super().problems()
        if self.batch_size < 1:
            problems.append("batch_size must be >= 1")
        if not 0 <= self.importance_exponent_start <= 1:
            problems.append("importance_exponent_start must be in [0, 1]")
        if min(self.temperatures) <= 0:
            problems.append("temperatures must be > 0")
        m1, m2 = self.temperature_milestones
        if not 0 <= m1 <= m2 <= 1:
            problems.append("temperature_milestones must satisfy 0 <= first <= second <= 1")
        if self.selfplay_update_interval_updates < 1:
            problems.append("selfplay_update_interval_updates must be >= 1")
        discount = self.learner.discount
        if abs(self.mcts.discount - discount) > 1e-12:
            problems.append(
                f"mcts.discount ({self.mcts.discount}) must equal learner.discount ({discount})"
            )
        horizon = self.learner.value_prefix_horizon
        if self.mcts.value_prefix_horizon != horizon:
            problems.append(
                f"mcts.value_prefix_horizon ({self.mcts.value_prefix_horizon}) must equal the "
                f"learner's ({horizon})"
            )
        if self.backend == "ray":
            if self.num_actors < 1 or self.num_envs % self.num_actors != 0:
                problems.append(
                    f"backend=ray splits num_envs={self.num_envs} over num_actors="
                    f"{self.num_actors}: num_envs must be a positive multiple of num_actors"
                )
            if self.actor_chunk_steps < 1:
                problems.append("actor_chunk_steps must be >= 1")
        if not self.env_id.startswith("ALE/"):
            for name in ("frame_size", "grayscale"):
                if getattr(self, name) is not None:
                    problems.append(f"{name} applies to ALE games only; leave it None")
            if self.terminal_on_life_loss:
                problems.append("terminal_on_life_loss applies to ALE games only")
        problems += _shared_space_problems(self)
        components = EfficientZeroNet.COMPONENTS
        check_component_names(self.transfer, components, "transfer", "EfficientZero")
        check_component_names(self.freeze, components, "freeze", "EfficientZero")
        if self.init_from is None and (self.transfer or self.freeze):
            problems.append("transfer / freeze need init_from (--init-from RUN)")
        if self.init_from is not None and not self.transfer:
            problems.append("init_from needs the components to load (--transfer "
                            "representation dynamics ...)")
        return problems


RESUMABLE_ON_ANOTHER_BACKEND: frozenset[str] = frozenset(
    {"backend", "num_actors", "actor_chunk_steps", "ray_address", "ray_cpus_per_actor",
     "ray_gpus_per_actor", "ray_learner_gpus"})
"""Config fields a resumed run may change (a run may resume on another backend)."""


def ez_env_kwargs(cfg: EZTrainConfig) -> dict[str, Any]:
    """The :func:`~rltransfer.envs.make_env` settings of ``cfg``'s training env (after
    ``env_id, num_envs, seed``): episode cap, life-loss terminals, and the sticky actions,
    frame size and grayscale ``cfg`` sets (unset ones: the suite default). Evaluation uses
    :func:`~rltransfer.evaluation.protocol.eval_env_kwargs` of these."""
    kwargs: dict[str, Any] = {"max_episode_frames": cfg.max_episode_frames,
                              "terminal_on_life_loss": cfg.terminal_on_life_loss}
    if cfg.sticky_action_prob is not None:
        kwargs["sticky_action_prob"] = cfg.sticky_action_prob
    if cfg.frame_size is not None:
        kwargs["frame_size"] = cfg.frame_size
    if cfg.grayscale is not None:
        kwargs["grayscale"] = cfg.grayscale
    return kwargs



def ez_net_config(cfg: EZTrainConfig) -> WorldModelConfig:
    """The world model of ``cfg``: the preset's sizes with the suite's observation scale
    (255 for pixels, 1 for MinAtar)."""
    return dataclasses.replace(world_model_preset(cfg.net_preset),
                               obs_scale=float(env_spec(cfg.env_id).obs_scale))


def temperature_at(cfg: EZTrainConfig, env_steps: int) -> float:
    """Action-sampling temperature at ``env_steps`` (EZ: 1, then 0.5 after 50% of training,
    then 0.25 after 75%)."""
    frac = env_steps / max(1, cfg.total_env_steps)
    first, second = cfg.temperature_milestones
    if frac < first:
        return cfg.temperatures[0]
    if frac < second:
        return cfg.temperatures[1]
    return cfg.temperatures[2]


def importance_exponent_at(cfg: EZTrainConfig, env_steps: int) -> float:
    """beta annealed linearly from ``importance_exponent_start`` to 1 over the run."""
    frac = min(1.0, env_steps / max(1, cfg.total_env_steps))
    return cfg.importance_exponent_start + frac * (1.0 - cfg.importance_exponent_start)


def _shared_space_problems(cfg: EZTrainConfig) -> list[str]:
    """Problems of ``action_space`` / ``pad_channels`` (checked without building the env)."""
    from rltransfer.agents.efficientzero.shared_space import ACTION_SPACES
    from rltransfer.envs.spec import suite_of

    problems = []
    if cfg.action_space is not None:
        if cfg.action_space not in ACTION_SPACES:
            problems.append(f"action_space must be one of {sorted(ACTION_SPACES)} or None "
                            f"(got {cfg.action_space!r})")
        elif suite_of(cfg.env_id) != ACTION_SPACES[cfg.action_space]:
            problems.append(f"action_space={cfg.action_space!r} applies to "
                            f"{ACTION_SPACES[cfg.action_space]} games, not {cfg.env_id}")
    if cfg.pad_channels is not None and cfg.pad_channels < 1:
        problems.append(f"pad_channels must be >= 1 (got {cfg.pad_channels})")
    return problems
