"""The R2D2 configurations: :class:`R2D2Config` (the learner) and :class:`TrainConfig` (one
run of ``rltransfer pretrain`` / ``rltransfer train``: env, learner, exploration, transfer).

Reward-free pretraining is an ordinary agent trained on an intrinsic reward: the same loop,
the same config, with ``reward_free=True`` and ``intrinsic="rnd"`` (or ``"constant"``).
Per-suite starting values are in :mod:`rltransfer.agents.r2d2.suites`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rltransfer.core.config import ConfigError, RunConfig
from rltransfer.intrinsic.ngu import NGUConfig, ngu_betas, ngu_gammas
from rltransfer.nets.encoders import ENCODER_KINDS

Explore = Literal["epsilon_greedy", "ez_greedy", "bt"]
"""How a run explores: the values of :attr:`TrainConfig.explore`."""
Init = Literal["none", "full", "partial"]
"""Where a run's initial weights come from: the values of :attr:`TrainConfig.init`."""


@dataclass
class R2D2Config:
    """Learner hyperparameters; defaults from R2D2 (Kapturowski et al. 2019, Table 2).

    These field defaults are the Atari suite's. ``rltransfer train`` / ``pretrain`` and
    :func:`rltransfer.agents.r2d2.suites.suite_config` start ``gamma``, ``n_step``, ``lr``,
    ``adam_eps`` and ``target_update_period_updates`` from the env's suite defaults instead
    (:data:`rltransfer.agents.r2d2.suites.SUITE_DEFAULTS`; MiniGrid: lr 1e-3, Adam eps 1e-6,
    gamma 0.9, target copy every 250 updates); values the user sets win.

    ``gamma``, ``n_step``, ``priority_exponent`` and ``importance_exponent`` configure the
    replay (:class:`rltransfer.replay.TransitionReplay`), which computes the n-step returns and
    discounts the agent consumes; ``batch_size`` is the learner batch the loop samples.
    """

    gamma: float = 0.997
    """Discount per env step."""
    n_step: int = 5
    """Steps of the n-step return."""
    lr: float = 1e-4
    """Adam learning rate."""
    adam_eps: float = 1e-3
    """Adam epsilon."""
    max_grad_norm: float = 40.0
    """Global gradient-norm clip."""
    target_update_period_updates: int = 2500
    """Copy online -> target every this many updates."""
    value_rescaling: bool = True
    """Use h / h^-1 around the bootstrap (off: plain n-step targets)."""
    value_rescaling_eps: float = 1e-3
    """eps of h(x) = sign(x)(sqrt(|x|+1) - 1) + eps x."""
    batch_size: int = 64
    """Transitions per update."""
    feature_dim: int = 512
    """Torso output width."""
    torso: str = "auto"
    """Encoder kind (:data:`rltransfer.nets.encoders.EncoderKind`): ``"auto"`` (Nature CNN
    if H, W >= 36, else the small CNN), ``"nature_cnn"``, ``"small_cnn"`` or ``"mlp"``
    (no convs; cheapest for tiny grids such as MiniGrid's 3x5x5 view)."""
    hidden: int = 512
    """Core output width and head hidden width."""
    dueling: bool = True
    """Dueling head (else a plain MLP head)."""
    double_q: bool = True
    """Double Q-learning: argmax by the online net, value by the target net."""
    priority_eta: float = 0.9
    """R2D2 sequence-priority mix ``eta max|delta| + (1 - eta) mean|delta|`` (unused by the
    feedforward agent: transitions use |delta|)."""
    core: str = "feedforward"
    """``"feedforward"`` (Linear + ReLU, transition replay) or ``"lstm"`` (R2D2's recurrent
    core over replayed sequences)."""
    lstm_hidden: int = 512
    """LSTM width (R2D2: 512; a small value for CPU runs). The head's hidden width is
    ``hidden``."""
    core_reward_inputs: bool = True
    """LSTM core: feed the previous extrinsic and intrinsic rewards (Agent57); off: features
    and the previous action only (e.g. for a prior used where no reward is known)."""
    sequence_length: int = 80
    """LSTM core: training steps per replayed sequence (R2D2: 80)."""
    burn_in: int = 40
    """LSTM core: steps before the training part unrolled without gradient from the stored
    state (R2D2: a 40-step prefix); stored sequences span ``burn_in + sequence_length``."""
    sequence_overlap: int = 40
    """LSTM core: training parts of consecutive sequences of an episode overlap by this many
    steps (R2D2: 40), i.e. a sequence starts every ``sequence_length - sequence_overlap``
    steps. Must be >= ``n_step`` with the LSTM core (checked): the last ``n_step`` steps of
    a sequence (no bootstrap inside it) are trained by the next one."""
    priority_exponent: float = 0.9
    """alpha of proportional prioritized replay."""
    importance_exponent: float = 0.6
    """beta of the importance-sampling weights."""
    num_policies: int = 1
    """NGU policy family size ``N`` (Badia et al. 2020: 32). ``1``: a single policy (reward
    ``r_e + intrinsic_scale r_i``, discount ``gamma``). ``N > 1`` needs ``core="lstm"``: the
    core is fed one-hot ``j``; policy ``j`` uses ``beta_j`` (``ngu_betas(N,
    intrinsic_scale)``) and ``gamma_j`` from ``gamma`` (j = 0) down to ``gamma_min``
    (j = N - 1); env ``i`` acts as ``j = i mod N``."""
    gamma_min: float = 0.99
    """Discount of the most exploratory policy ``j = N - 1`` (NGU: 0.99; unused for N = 1)."""
    eval_policy: int = 0
    """Policy index ``j`` used when acting without an explicit one: evaluation and a saved
    policy loaded as BT's prior. Default 0, NGU's exploitative policy (``beta_0 = 0``,
    ``gamma_0 = gamma``); reward-free pretraining of a family must pick an exploratory ``j``
    (e.g. ``N - 1``), since policy 0's reward is then 0."""

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 <= self.gamma <= 1.0:
            problems.append(f"gamma must be in [0, 1] (got {self.gamma})")
        for name in ("n_step", "target_update_period_updates", "batch_size", "feature_dim",
                     "hidden"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        for name in ("lr", "adam_eps", "max_grad_norm"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.value_rescaling_eps < 0:
            problems.append(f"value_rescaling_eps must be >= 0 (got {self.value_rescaling_eps})")
        if not 0.0 <= self.priority_eta <= 1.0:
            problems.append(f"priority_eta must be in [0, 1] (got {self.priority_eta})")
        if self.priority_exponent < 0 or self.importance_exponent < 0:
            problems.append("priority_exponent and importance_exponent must be >= 0")
        if self.core not in ("feedforward", "lstm"):
            problems.append(f"core must be 'feedforward' or 'lstm' (got {self.core!r})")
        if self.lstm_hidden < 1 or self.sequence_length < 1:
            problems.append("lstm_hidden and sequence_length must be >= 1")
        if self.burn_in < 0:
            problems.append(f"burn_in must be >= 0 (got {self.burn_in})")
        if not 0 <= self.sequence_overlap < self.sequence_length:
            problems.append(
                f"sequence_overlap must be in [0, sequence_length) (got {self.sequence_overlap}"
                f" with sequence_length {self.sequence_length})"
            )
        if self.core == "lstm" and 0 <= self.sequence_overlap < self.n_step:
            problems.append(
                f"sequence_overlap ({self.sequence_overlap}) must be >= n_step ({self.n_step}) "
                "with core='lstm': a training step whose n-step bootstrap lies past the end "
                "of its sequence is masked out of the loss, so the last n_step steps of each "
                "sequence are trained only by the next sequence, which covers them only if "
                "the two overlap by at least n_step steps; with less, n_step - "
                "sequence_overlap steps per sequence are never trained (R2D2: overlap 40, "
                "n_step 5)"
            )
        if self.core == "lstm" and self.sequence_length <= self.n_step:
            problems.append(
                f"sequence_length ({self.sequence_length}) must exceed n_step ({self.n_step}): "
                "targets bootstrap inside the sequence"
            )
        if self.torso not in ENCODER_KINDS:
            problems.append(
                f"torso must be one of {', '.join(ENCODER_KINDS)} (got {self.torso!r})"
            )
        if self.num_policies < 1:
            problems.append(f"num_policies must be >= 1 (got {self.num_policies})")
        elif self.num_policies > 1:
            if self.core != "lstm":
                problems.append(
                    f"num_policies={self.num_policies} (NGU policy family) needs core='lstm': "
                    "the feedforward agent has no policy input; use core='lstm' or "
                    "num_policies=1"
                )
            if not 0.0 <= self.gamma_min <= self.gamma < 1.0:
                problems.append(
                    f"the policy family needs 0 <= gamma_min <= gamma < 1 (got gamma_min="
                    f"{self.gamma_min}, gamma={self.gamma})"
                )
        if not 0 <= self.eval_policy < max(1, self.num_policies):
            problems.append(
                f"eval_policy must be in [0, num_policies={self.num_policies}) "
                f"(got {self.eval_policy})"
            )
        if problems:
            raise ConfigError("invalid R2D2Config: " + "; ".join(problems))


@dataclass
class TrainConfig(RunConfig):
    """One training run: environment, learner, exploration, transfer, and bookkeeping (the
    run-level fields, budget, replay ratio, cadences, device, in :class:`RunConfig`).

    Budgets are in env steps (an Atari env step is 4 frames). Sources: R2D2 (Kapturowski et
    al. 2019) for the learner; Behavior Transfer (Campos et al. 2021, Algorithm 1) for
    ``explore="bt"``; ez-greedy (Dabney et al. 2021).
    """

    env_id: str = "MiniGrid-DoorKey-5x5-v0"
    """Environment id: ``MiniGrid-*``, ``MinAtar/<Game>``, or ``ALE/<Game>-v5``."""
    num_envs: int = 8
    """Environments stepped together (with ``epsilon_schedule="ape_x"``, env ``i`` has its
    own epsilon)."""
    run_dir: str = "runs/train"
    """Run directory (resumed when it holds this run)."""
    updates_per_env_step: float = 0.25
    """Replay ratio: gradient updates per env step (summed over envs); 0.25 is one update
    every 4 env steps."""
    task: str | None = None
    """Task variant (reward function) of the environment, e.g. ``goal``, ``key``, ``door``."""
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
    prioritized: bool = True
    """Prioritized replay (else uniform)."""

    # Exploration.
    explore: Explore = "epsilon_greedy"
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
    init: Init = "none"
    """Weight transfer: ``full`` loads torso+core+head, ``partial`` torso+core (head random)."""
    init_from: str | None = None
    """Checkpoint or run directory for weight init (defaults to ``prior``)."""
    freeze: tuple[str, ...] = ()
    """Modules kept frozen after init: any of ``torso``, ``core``, ``head``."""

    # Evaluation.
    eval_epsilon: float = 0.0
    """Epsilon of the evaluated policy."""

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

    def problems(self) -> list[str]:
        """The run-level problems (:meth:`RunConfig.problems`) and R2D2's: BT without pi_p, a
        pi_p object where it cannot be used, weight init without a source, a Ray split that
        does not divide the envs. (The learner's own fields are checked by
        :class:`R2D2Config`; the policy family's by :func:`policy_family`.)"""
        problems = super().problems()
        if self.explore == "bt" and self.prior is None:
            problems.append("explore=bt needs --prior PATH (the pretrained policy; from "
                            "Python, or prior=<a Policy object>)")
        prior_object = is_prior_object_marker(self.prior)
        if prior_object and self.explore != "bt":
            problems.append("a pi_p object (prior=) is only used by explore=bt")
        if prior_object and self.init_from is None and (self.init != "none" or self.freeze):
            problems.append(f"init={self.init} / freeze need --init-from PATH: pi_p is a "
                            "Python object, which has no weights to load")
        if prior_object and self.backend == "ray":
            problems.append("backend=ray loads pi_p in each actor from a path; a pi_p object "
                            "(prior=) needs backend=local")
        if self.explore == "bt" and not (self.flights or self.extra_action):
            problems.append("explore=bt with flights and extra_action both off is plain "
                            "eps-greedy")
        if self.init != "none" and (self.init_from or self.prior) is None:
            problems.append(f"init={self.init} needs --init-from PATH (or --prior PATH)")
        if self.backend == "ray":
            if self.num_actors < 1 or self.num_envs % self.num_actors != 0:
                problems.append(
                    f"backend=ray splits num_envs={self.num_envs} over num_actors="
                    f"{self.num_actors}: num_envs must be a positive multiple of num_actors"
                )
            if self.actor_chunk_steps < 1 or self.actor_sync_period_updates < 1:
                problems.append("actor_chunk_steps and actor_sync_period_updates must be >= 1")
        return problems


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
