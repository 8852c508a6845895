"""The training configuration shared by ``rltransfer pretrain`` and ``rltransfer train``.

Reward-free pretraining is an ordinary agent trained on an intrinsic reward: the same loop,
the same config, with ``reward_free=True`` and ``intrinsic="rnd"`` (or ``"constant"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from rltransfer.agents.r2d2.agent import R2D2Config
from rltransfer.core.config import ConfigError
from rltransfer.intrinsic.ngu import NGUConfig, ngu_betas, ngu_gammas


@dataclass
class TrainConfig:
    """One training run: environment, learner, exploration, transfer, and bookkeeping.

    Budgets are in env steps (an Atari env step is 4 frames). Sources: R2D2 (Kapturowski et
    al. 2019) for the learner; Behavior Transfer (Campos et al. 2021, Algorithm 1) for
    ``explore="bt"``; ez-greedy (Dabney et al. 2021).
    """

    env_id: str = "MiniGrid-DoorKey-5x5-v0"
    """Environment id: ``MiniGrid-*``, ``MinAtar/<Game>``, or ``ALE/<Game>-v5``."""
    task: str | None = None
    """Task variant (reward function) of the environment, e.g. ``goal``, ``key``, ``door``."""
    num_envs: int = 8
    total_env_steps: int = 50_000
    seed: int = 0
    run_dir: str = "runs/train"
    frame_stack: int | None = None
    """Frames stacked as agent input; ``None`` takes the suite default (Atari 4, else 1)."""
    terminal_on_life_loss: bool = False
    max_episode_frames: int = 108_000
    """Episode cap in emulator frames (Atari: 108k = 30 minutes of play; others: env steps)."""
    sticky_action_prob: float | None = None
    """Probability of repeating the previous action; ``None`` takes the suite's default
    (ALE v5: 0.25, MinAtar: 0.1, MiniGrid: 0)."""

    # Reward.
    reward_free: bool = False
    """Hide the task reward from the learner (it is still logged and evaluated)."""
    intrinsic: Literal["none", "rnd", "ngu", "constant"] = "none"
    """``rnd`` (Burda et al. 2019), ``ngu`` (episodic x life-long novelty, Badia et al. 2020;
    settings in ``ngu``), ``constant`` or ``none``. With ``agent.num_policies = N > 1``
    the learner trains NGU's policy family (see :func:`policy_family`)."""
    intrinsic_scale: float = 1.0
    """beta: the learner's reward is ``extrinsic + intrinsic_scale * intrinsic``; with a
    policy family (``agent.num_policies > 1``) the largest beta, ``beta_{N-1}``."""
    intrinsic_lr: float = 1e-4
    rnd_torso: str = "auto"
    """RND networks' body: ``auto``, ``mlp``, ``small_cnn``, ``nature_cnn``."""
    rnd_feature_dim: int = 512
    rnd_hidden: int = 512
    intrinsic_warmup_env_steps: int = 1_000
    """RND and NGU's RND: random-action steps whose frames initialise the observation
    statistics before training (Burda et al. 2019); counted in the budget, not stored in
    replay."""
    ngu: NGUConfig = field(default_factory=NGUConfig)
    """NGU intrinsic reward settings (used when ``intrinsic="ngu"``)."""

    # Learner.
    agent: R2D2Config = field(default_factory=R2D2Config)
    """Learner settings; ``agent.core="lstm"`` switches the loop to sequence replay and
    recurrent acting (R2D2), ``"feedforward"`` (default) to transition replay."""
    replay_capacity_env_steps: int = 100_000
    prioritized: bool = True
    learning_starts_env_steps: int = 2_000
    env_steps_per_update: float = 4.0
    """Replay ratio: one gradient update every this many env steps (summed over envs)."""

    # Exploration.
    explore: Literal["epsilon_greedy", "ez_greedy", "bt"] = "epsilon_greedy"
    epsilon_schedule: Literal["ape_x", "constant", "linear"] = "ape_x"
    """``ape_x``: env i of N uses eps_i = 0.4^(1 + 7 i / (N - 1)) (R2D2's actors);
    ``constant``: every env uses ``epsilon``; ``linear``: every env decays from
    ``epsilon_start`` to ``epsilon`` over ``epsilon_decay_env_steps`` (DQN)."""
    epsilon: float = 0.01
    epsilon_start: float = 1.0
    epsilon_decay_env_steps: int = 20_000
    ez_mu: float = 2.0
    max_flight_env_steps: int = 10_000
    """Truncation of the Zeta(mu) flight / repeat length (also ends at episode end)."""

    # Behavior Transfer and weight transfer.
    prior: str | None = None
    """Pretrained policy pi_p for BT: a checkpoint or run directory. From Python, any
    :class:`~rltransfer.core.policy.Policy` object may be passed instead, as
    ``train(cfg, prior=obj)`` / ``Trainer(cfg, prior=obj)``; the run's ``config.json`` then
    records ``"<python object: module.Class>"`` here (:func:`prior_object_marker`), and a
    resume must pass an object of the same class (another class is a different run)."""
    prior_epsilon: float = 0.0
    """Epsilon of pi_p when it acts (its own argmax otherwise); a Policy object is wrapped
    so that it takes a uniform random action with this probability."""
    flights: bool = True
    """BT: temporally-extended flights of pi_p with Zeta(mu) lengths."""
    extra_action: bool = True
    """BT: the extra action a+ that executes a' ~ pi_p(s)."""
    epsilon_levy: float = 0.01
    """BT: probability of starting a flight at a step outside a flight."""
    init: Literal["none", "full", "partial"] = "none"
    """Weight transfer: ``full`` loads torso+core+head, ``partial`` torso+core (head random)."""
    init_from: str | None = None
    """Checkpoint or run directory for weight init (defaults to ``prior``)."""
    freeze: tuple[str, ...] = ()
    """Modules kept frozen after init: any of ``torso``, ``core``, ``head``."""

    # Evaluation and bookkeeping.
    eval_every_env_steps: int = 10_000
    eval_episodes: int = 10
    eval_epsilon: float = 0.0
    checkpoint_every_env_steps: int = 10_000
    keep_checkpoints: int = 2
    checkpoint_replay: bool = True
    """Save replay contents in checkpoints (exact resume). Off: a resumed run refills replay
    for ``learning_starts_env_steps`` before updating again (documented loss)."""
    device: str = "cpu"
    torch_threads: int = 1
    progress: bool = True
    tensorboard: bool = True

    # Distributed acting (rltransfer.distributed).
    backend: Literal["local", "ray"] = "local"
    """``local``: acting and learning in this process. ``ray``: ``num_actors`` Ray actor
    processes each step ``num_envs / num_actors`` of the envs (Ape-X epsilons over all
    ``num_envs``) and feed this process's learner and replay (same checkpoints)."""
    num_actors: int = 2
    """Ray actor processes (``backend="ray"``); ``num_envs`` must be a multiple of it."""
    actor_sync_period_updates: int = 100
    """Actors load the learner's online network every this many updates (R2D2 refreshes
    actors every 400 env steps; 100 updates at 4 env steps per update)."""
    actor_chunk_steps: int = 16
    """Vector steps each actor sends per round (``actor_chunk_steps * num_envs`` env steps)."""
    ray_address: str | None = None
    """Ray cluster to join (``HOST:PORT`` of a ``ray start --head`` node, or ``auto``);
    ``None``: the ``RAY_ADDRESS`` environment variable if set, else a local Ray instance."""
    ray_cpus_per_actor: float = 1.0
    """Logical CPUs each Ray actor asks for."""
    ray_gpus_per_actor: float = 0.0
    """GPU fraction each Ray actor asks for (``> 0``: actors act on ``cuda``; 0: on CPU)."""
    ray_learner_gpus: float = 0.0
    """GPU share the learner (this process, which Ray does not schedule) reserves on its node
    so GPU actors leave it that share (0: nothing reserved)."""


PRIOR_OBJECT_PREFIX = "<python object: "
"""Start of the ``prior`` value a run records when pi_p was given as a Python object."""


def prior_object_marker(prior: object) -> str:
    """What ``config.json`` records as ``prior`` for a Policy object: its class, e.g.
    ``"<python object: rltransfer.sb3.SB3Policy>"`` (the object itself is not saved)."""
    kind = type(prior)
    return f"{PRIOR_OBJECT_PREFIX}{kind.__module__}.{kind.__qualname__}>"


def is_prior_object_marker(value: str | None) -> bool:
    """Whether a config's ``prior`` stands for a Python object (not a path)."""
    return value is not None and value.startswith(PRIOR_OBJECT_PREFIX)


def with_prior_object(cfg: TrainConfig, prior: object | None) -> TrainConfig:
    """The config a run with pi_p given as the Python object ``prior`` records.

    Args:
        cfg: the run's config; ``cfg.prior`` must be ``None`` or this object's marker (a
            config read back from a run's ``config.json``).
        prior: the pi_p object, or ``None`` (pi_p, if any, is the path ``cfg.prior``).

    Returns:
        ``cfg`` with ``prior`` set to :func:`prior_object_marker` (``cfg`` itself when
        ``prior`` is ``None``).

    Raises:
        ConfigError: both a path and an object are given; the config records an object of
            another class; or it records an object but none is given (a Python-object pi_p
            cannot be rebuilt from ``config.json``: resume from Python with the object).
    """
    if prior is None:
        if cfg.prior is not None and is_prior_object_marker(cfg.prior):
            kind = cfg.prior[len(PRIOR_OBJECT_PREFIX):-1]
            raise ConfigError(
                f"this run's pi_p was a Python object ({kind}), which config.json cannot "
                "rebuild; resume it from Python with train(cfg, prior=<an object of that "
                "class>)"
            )
        return cfg
    marker = prior_object_marker(prior)
    if cfg.prior is not None and cfg.prior != marker:
        what = "a pi_p object of another class" if is_prior_object_marker(cfg.prior) else (
            f"a pi_p path ({cfg.prior!r})")
        raise ConfigError(
            f"the config names {what} and prior= passes a {type(prior).__name__}; give pi_p "
            "once: a path in cfg.prior or an object as prior="
        )
    return dataclasses.replace(cfg, prior=marker)


@dataclass(frozen=True)
class PolicyFamily:
    """NGU's family of N policies {(beta_j, gamma_j)} and which env acts as which policy.

    Attributes:
        betas: ``float32[N]`` intrinsic-reward scales beta_j.
        gammas: ``float64[N]`` discounts gamma_j.
        env_policy: ``int64[num_envs]`` policy index ``j_i = i mod N`` of env ``i``.
        env_betas: ``float32[num_envs]`` ``betas[env_policy]``.
    """

    betas: np.ndarray
    gammas: np.ndarray
    env_policy: np.ndarray
    env_betas: np.ndarray


def policy_family(cfg: TrainConfig) -> PolicyFamily:
    """The run's policy family (Badia et al. 2020, Sec. 3 and App. A; Agent57 Sec. 4).

    ``N = cfg.agent.num_policies``. ``N = 1`` is the single policy trained before the family
    existed: ``beta = intrinsic_scale``, ``gamma = agent.gamma``. ``N > 1``: ``beta_j`` from
    :func:`~rltransfer.intrinsic.ngu.ngu_betas` with ``beta = intrinsic_scale`` (``beta_0 = 0``,
    the exploitative policy) and ``gamma_j`` from :func:`~rltransfer.intrinsic.ngu.ngu_gammas`
    between ``agent.gamma`` (``j = 0``) and ``agent.gamma_min`` (``j = N - 1``).

    Assignment: env ``i`` of the vector env acts as policy ``j_i = i mod N`` for the whole
    run (NGU/Agent57 give each actor a fixed ``j``). Replay stores each step's ``j`` and the
    learner trains policy ``j`` only on data acted by ``j`` (its reward ``r_e + beta_j r_i``
    and discount ``gamma_j``), so every policy must act: ``num_envs >= N``.

    Raises:
        ConfigError: ``num_envs < N``; reward-free training of a family with
            ``agent.eval_policy = 0`` (policy 0's reward is then identically 0).
        ValueError: from ``ngu_betas`` / ``ngu_gammas`` on bad scales or discounts.
    """
    n = cfg.agent.num_policies
    if n > 1 and cfg.reward_free and cfg.agent.eval_policy == 0:
        raise ConfigError(
            "reward-free training of a policy family: policy 0 has beta_0 = 0 and so a zero "
            "reward; set agent.eval_policy to an exploratory j (e.g. num_policies - 1) so the "
            "evaluated and saved policy is one that explores"
        )
    if cfg.num_envs < n:
        raise ConfigError(
            f"num_envs ({cfg.num_envs}) must be >= agent.num_policies ({n}): env i acts as "
            "policy i mod N and a policy that never acts is never trained"
        )
    if n == 1:
        betas = np.array([cfg.intrinsic_scale], dtype=np.float32)
        gammas = np.array([cfg.agent.gamma], dtype=np.float64)
    else:
        betas = ngu_betas(n, cfg.intrinsic_scale).astype(np.float32)
        gammas = ngu_gammas(n, gamma_max=cfg.agent.gamma, gamma_min=cfg.agent.gamma_min)
    env_policy = np.arange(cfg.num_envs, dtype=np.int64) % n
    return PolicyFamily(betas=betas, gammas=gammas, env_policy=env_policy,
                        env_betas=betas[env_policy])


# ---------------------------------------------------------------------- per-suite defaults
@dataclass(frozen=True)
class SuiteDefaults:
    """The R2D2 learner and loop values a suite's runs start from (as rl-zoo keeps
    hyperparameters per env): ``rltransfer train`` / ``pretrain`` and :func:`suite_config`
    take them for every field the user does not set; a value the user sets always wins, and
    the run's ``config.json`` records the resolved values.

    Attributes:
        gamma: ``agent.gamma``, discount per env step.
        n_step: ``agent.n_step``.
        lr: ``agent.lr``, Adam learning rate.
        adam_eps: ``agent.adam_eps``.
        target_update_period_updates: ``agent.target_update_period_updates``.
        learning_starts_env_steps: env steps collected before the first update.
        env_steps_per_update: replay ratio (env steps per gradient update).
        epsilon_schedule: acting epsilons (see :attr:`TrainConfig.epsilon_schedule`).
        source: where the values come from.
    """

    gamma: float
    n_step: int
    lr: float
    adam_eps: float
    target_update_period_updates: int
    learning_starts_env_steps: int
    env_steps_per_update: float
    epsilon_schedule: Literal["ape_x", "constant", "linear"]
    source: str


SUITE_AGENT_FIELDS: tuple[str, ...] = (
    "gamma", "n_step", "lr", "adam_eps", "target_update_period_updates")
""":class:`SuiteDefaults` fields that set :class:`~rltransfer.agents.r2d2.agent.R2D2Config`
fields."""
SUITE_LOOP_FIELDS: tuple[str, ...] = (
    "learning_starts_env_steps", "env_steps_per_update", "epsilon_schedule")
""":class:`SuiteDefaults` fields that set :class:`TrainConfig` fields."""

R2D2_PAPER_DEFAULTS = SuiteDefaults(
    gamma=0.997, n_step=5, lr=1e-4, adam_eps=1e-3, target_update_period_updates=2_500,
    learning_starts_env_steps=2_000, env_steps_per_update=4.0, epsilon_schedule="ape_x",
    source="R2D2 (Kapturowski et al. 2019, Table 2) for the learner and the Ape-X epsilons; "
           "the field defaults of TrainConfig / R2D2Config",
)
"""Atari: R2D2's values, equal to the :class:`TrainConfig` / ``R2D2Config`` field defaults."""

MINIGRID_DEFAULTS = SuiteDefaults(
    gamma=0.9, n_step=5, lr=1e-3, adam_eps=1e-6, target_update_period_updates=250,
    learning_starts_env_steps=2_000, env_steps_per_update=4.0, epsilon_schedule="ape_x",
    source="measured here (docs/benchmarks.md, 'R2D2 defaults on MiniGrid'; docs/decisions.md, "
           "'Per-suite defaults'); the values of the bt-minigrid recipes' learner",
)
"""MiniGrid: returns <= 1 and episodes of tens of steps. R2D2's Adam epsilon 1e-3 is ~10x
the gradients there and shrinks every step: with R2D2's values greedy return is 0 on
Empty-5x5 after 20k env steps (seeds 0-2). lr 1e-3, epsilon 1e-6, gamma 0.9 (no-op actions'
Q-values must differ from moves by more than the approximation noise) and a target copy every
250 updates (R2D2's 2,500 is one copy per 10k env steps) reach the optimum, 0.955, on
Empty-5x5 by 10k env steps on seeds 0-4."""

SUITE_DEFAULTS: dict[str, SuiteDefaults] = {
    "atari": R2D2_PAPER_DEFAULTS,
    # MinAtar: R2D2's values until MinAtar-specific ones are measured (docs/decisions.md).
    "minatar": R2D2_PAPER_DEFAULTS,
    "minigrid": MINIGRID_DEFAULTS,
}
"""Per suite (:func:`rltransfer.envs.spec.suite_of`) the R2D2 defaults; DMC has none (its
actions are continuous: ``rltransfer train-sac``)."""


def suite_defaults(env_id: str) -> SuiteDefaults:
    """The R2D2 learner and loop defaults of ``env_id``'s suite (:data:`SUITE_DEFAULTS`).

    Raises:
        UnknownEnvError: ``env_id`` belongs to no suite.
        ConfigError: the suite has no R2D2 defaults (DMC: continuous actions).
    """
    from rltransfer.envs.spec import suite_of

    suite = suite_of(env_id)
    if suite not in SUITE_DEFAULTS:
        raise ConfigError(
            f"{env_id} ({suite}) has continuous actions, which the R2D2 learner cannot act "
            "in; train it with rltransfer train-sac"
        )
    return SUITE_DEFAULTS[suite]


def apply_suite_defaults(cfg: TrainConfig, env_id: str | None = None) -> TrainConfig:
    """``cfg`` for ``env_id`` (default ``cfg.env_id``) with that suite's
    :class:`SuiteDefaults` in place of ``cfg``'s values of those fields.

    Meant for a base config whose other fields are defaults (the CLI applies it to the verb's
    default before parsing the flags, so that flags win); values already in ``cfg`` for the
    suite's fields are replaced.

    Raises:
        UnknownEnvError, ConfigError: from :func:`suite_defaults`.
    """
    env = cfg.env_id if env_id is None else env_id
    d = suite_defaults(env)
    agent = dataclasses.replace(cfg.agent, **{f: getattr(d, f) for f in SUITE_AGENT_FIELDS})
    loop: dict[str, Any] = {f: getattr(d, f) for f in SUITE_LOOP_FIELDS}
    return dataclasses.replace(cfg, env_id=env, agent=agent, **loop)


def suite_config(env_id: str, *, agent: Mapping[str, Any] | None = None,
                 **changes: Any) -> TrainConfig:
    """A :class:`TrainConfig` for ``env_id`` from its suite's defaults, then the caller's values.

    The Python counterpart of ``rltransfer train --env-id ENV ...``: field defaults, then
    :func:`suite_defaults` of ``env_id``, then ``agent`` (``R2D2Config`` field -> value) and
    ``changes`` (``TrainConfig`` field -> value), which always win. (``TrainConfig(...)``
    itself holds R2D2's Atari values whatever its ``env_id``.)

    Example: ``suite_config("MiniGrid-Empty-5x5-v0", num_envs=4, agent={"hidden": 64})``.

    Raises:
        UnknownEnvError, ConfigError: from :func:`suite_defaults`; ConfigError from the
            configs' own checks. TypeError: a name that is not a field.
    """
    cfg = apply_suite_defaults(TrainConfig(), env_id)
    if agent:
        changes["agent"] = dataclasses.replace(cfg.agent, **agent)
    return dataclasses.replace(cfg, **changes)
