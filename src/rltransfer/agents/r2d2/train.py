"""The training loop: collect with an explorer, learn from replay, evaluate, checkpoint.

One loop serves reward-free pretraining (intrinsic reward only), training from scratch, and
every transfer strategy (weight init, Behavior Transfer), because they differ only in the
reward the learner sees, how actions are chosen, and where the weights start.

A run directory holds ``config.json``, ``metrics.jsonl``, ``tb/``, ``checkpoints/step_*``,
and, once finished, ``final/`` (the policy artifact other runs load with ``--prior`` or
``--init-from``). Started again with the same directory, a run resumes from its latest
checkpoint; started on a finished run, it does nothing.

Acting is a :class:`~rltransfer.agents.r2d2.actor.Collector`. ``backend="local"`` (default) steps
it in
this process between updates; ``backend="ray"`` runs ``num_actors`` collectors in Ray actor
processes (:mod:`rltransfer.distributed`) that feed this process's replay in rounds of
``actor_chunk_steps`` while the learner updates, with the same replay, replay ratio,
evaluation, checkpoints and resume (a run may resume on the other backend; Ray-backend
resumes are not bit-exact: the actors' RNG streams are not checkpointed).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rltransfer.agents.agent_policy import AgentPolicy, load_policy, policy_tensors
from rltransfer.agents.r2d2.actor import (
    Collector,
    StepBatch,
    acting_tensors,
    epsilon_at,
    make_explorer,
    make_intrinsic,
)
from rltransfer.agents.r2d2.config import (
    TrainConfig,
    policy_family,
    with_prior_object,
)
from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.agents.r2d2.transfer import initialise_from
from rltransfer.core.config import ConfigError, to_dict
from rltransfer.core.loop import TrainingLoop, sub_tensors
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.policy import Policy
from rltransfer.core.progress import RunProgress
from rltransfer.core.run import RunResult, closes_envs_on_failure
from rltransfer.core.run_dir import RunConflictError, prepare_run_dir
from rltransfer.core.schedule import LoopSchedule, ReplayRatio
from rltransfer.envs import env_spec, make_env
from rltransfer.evaluation.protocol import eval_env_kwargs, evaluate_policy
from rltransfer.intrinsic.ngu import NGUReward
from rltransfer.intrinsic.rnd import RND
from rltransfer.methods.behavior_transfer import PriorPolicyDriver, validate_prior, with_epsilon
from rltransfer.replay import SequenceReplay, TransitionReplay

if TYPE_CHECKING:
    from rltransfer.distributed import Round


__all__ = ["RunConflictError", "RunResult", "Trainer", "epsilon_at", "train", "train_env_kwargs"]


RESUMABLE_ON_ANOTHER_BACKEND: frozenset[str] = frozenset(
    {"backend", "num_actors", "actor_sync_period_updates", "actor_chunk_steps", "ray_address",
     "ray_cpus_per_actor", "ray_gpus_per_actor", "ray_learner_gpus"})
"""Config fields a resumed run may change (a run may resume on another backend)."""


def train_env_kwargs(cfg: TrainConfig) -> dict[str, Any]:
    """The :func:`~rltransfer.envs.make_env` settings of ``cfg``'s training env (after
    ``env_id, num_envs, seed``): task, reward-free, life-loss terminals, sticky actions and
    the episode cap. Evaluation uses :func:`~rltransfer.evaluation.protocol.eval_env_kwargs` of
    these (the training env except the protocol's documented differences)."""
    return {
        "task": cfg.task,
        "reward_free": cfg.reward_free,
        "terminal_on_life_loss": cfg.terminal_on_life_loss,
        "sticky_action_prob": cfg.sticky_action_prob,
        "max_episode_frames": cfg.max_episode_frames,
    }


class Trainer(TrainingLoop):
    """Owns the envs, agent, replay, explorer and intrinsic reward of one run.

    Args:
        cfg: the run's config (see :class:`TrainConfig`).
        prior: pi_p for Behavior Transfer as any :class:`~rltransfer.core.policy.Policy` object
            (a :class:`~rltransfer.core.policy.CallablePolicy`, an
            :class:`~rltransfer.sb3.SB3Policy`, an agent's policy...) instead of the path
            ``cfg.prior``; the run records its class in ``config.json``
            (:func:`~rltransfer.agents.r2d2.config.with_prior_object`) and acts with it as given,
            plus
            ``cfg.prior_epsilon``. ``self.cfg`` is the recorded config.

    Raises:
        ConfigError: inconsistent config (also: a path and an object both given, or a run
        recorded with a pi_p object resumed without one). SpaceMismatchError /
        CheckpointError: a prior or init checkpoint that does not fit. RunConflictError: the
        run dir holds another run (e.g. one whose pi_p object was of another class).
    """

    @closes_envs_on_failure
    def __init__(self, cfg: TrainConfig, prior: Policy | None = None) -> None:
        cfg = with_prior_object(cfg, prior)
        cfg.validate()
        # Nothing is written to the run dir before the env and the rest are validated.
        self.open_run(cfg, ignore=RESUMABLE_ON_ANOTHER_BACKEND)
        self.open_pixel_envs(make_env, env_spec(cfg.env_id), self.env_kwargs())
        self.num_env_actions = int(self.envs.single_action_space.n)  # type: ignore[attr-defined]
        self.prior: Policy | None = None
        if cfg.explore == "bt" and cfg.prior is not None:
            pi_p: Policy = (
                with_epsilon(prior, cfg.prior_epsilon, seed=cfg.seed + 7_919)
                if prior is not None
                else load_policy(cfg.prior, epsilon=cfg.prior_epsilon, seed=cfg.seed + 7_919)
            )
            validate_prior(pi_p, self.num_env_actions, self.obs_shape)
            self.prior = pi_p
        use_extra = cfg.explore == "bt" and cfg.extra_action
        self.num_agent_actions = self.num_env_actions + (1 if use_extra else 0)
        self.agent = R2D2Agent(
            cfg.agent, obs_shape=self.obs_shape, obs_scale=self.spec.obs_scale,
            num_actions=self.num_agent_actions, device=cfg.device,
            num_env_actions=self.num_env_actions,
        )
        self.recurrent = self.agent.recurrent
        # NGU policy family (Badia et al. 2020): env i acts as policy j_i = i mod N with
        # (beta_j, gamma_j); N = 1 is the single policy (beta = intrinsic_scale, agent.gamma).
        self.family = policy_family(cfg)
        if cfg.init != "none" or cfg.freeze:
            source = cfg.init_from or cfg.prior
            if source is None:
                raise ConfigError("--freeze needs --init-from PATH")
            initialise_from(self.agent, source, cfg.init, self.num_env_actions, cfg.freeze)
        capacity = max(1, cfg.replay_capacity_env_steps // cfg.num_envs)
        self.replay: TransitionReplay | SequenceReplay
        if self.recurrent:
            a = cfg.agent
            self.replay = SequenceReplay(
                num_envs=cfg.num_envs,
                capacity_per_env=max(capacity, a.burn_in + a.sequence_length
                                     + self.frame_stack + 1),
                frame_shape=self.frame_shape, state_dim=self.agent.state_dim,
                frame_stack=self.frame_stack, sequence_length=a.sequence_length,
                burn_in=a.burn_in, sequence_overlap=a.sequence_overlap, n_step=a.n_step,
                gamma=a.gamma, policy_gammas=self.family.gammas, prioritized=cfg.prioritized,
                priority_exponent=a.priority_exponent,
                importance_exponent=a.importance_exponent,
            )
        else:
            self.replay = TransitionReplay(
                num_envs=cfg.num_envs, capacity_per_env=capacity, frame_shape=self.frame_shape,
                frame_stack=self.frame_stack, n_step=cfg.agent.n_step, gamma=cfg.agent.gamma,
                prioritized=cfg.prioritized, priority_exponent=cfg.agent.priority_exponent,
                importance_exponent=cfg.agent.importance_exponent,
            )
        self.explorer = make_explorer(cfg, self.num_env_actions, self.rng)
        self.prior_driver = PriorPolicyDriver(self.prior) if self.prior is not None else None
        self.intrinsic = make_intrinsic(cfg, self.frame_shape, self.spec.obs_scale,
                                        self.num_env_actions)

        def linear_epsilon(env_steps: int) -> np.ndarray:
            return epsilon_at(cfg, env_steps)

        # The acting half (the Ray backend's actors run the same Collector; here it also
        # does the intrinsic warm-up).
        self.collector = Collector(
            self.envs, self.agent, self.explorer, frame_shape=self.frame_shape,
            frame_stack=self.frame_stack, rng=self.rng, intrinsic=self.intrinsic,
            intrinsic_scale=self.family.env_betas, policy_index=self.family.env_policy,
            prior_driver=self.prior_driver,
            epsilon_fn=linear_epsilon if cfg.epsilon_schedule == "linear" else None,
        )
        self.stacker = self.collector.stacker
        self.init_loop(LoopSchedule.from_config(
            cfg, ReplayRatio(cfg.updates_per_env_step, 1), cfg.learning_starts_env_steps,
        ), tensorboard=cfg.tensorboard)
        prepare_run_dir(cfg, cfg.run_dir, ignore=RESUMABLE_ON_ANOTHER_BACKEND)

    # ------------------------------------------------------------------ checkpoints
    def architecture(self) -> dict[str, Any]:
        """What a reader needs to rebuild the agent and check spaces."""
        return {
            "kind": "r2d2",
            "env_id": self.cfg.env_id,
            "task": self.cfg.task,
            "obs_shape": list(self.obs_shape),
            "frame_shape": list(self.frame_shape),
            "frame_stack": self.frame_stack,
            "obs_scale": self.spec.obs_scale,
            "num_actions": self.num_agent_actions,
            "num_env_actions": self.num_env_actions,
            "agent_config": to_dict(self.cfg.agent),
        }

    def final_tensors(self) -> dict[str, Any]:
        """The policy artifact (:func:`~rltransfer.agents.agent_policy.policy_tensors`)."""
        return dict(policy_tensors(self.agent))

    def checkpoint_meta(self, final: bool) -> dict[str, Any]:
        return {} if final else {"agent_state": self.agent.state_meta()}

    def state_tensors(self) -> dict[str, Any]:
        """Policy tensors, the agent's resumable state (``agent/``) and the intrinsic
        reward's (``intrinsic/``)."""
        tensors: dict[str, Any] = dict(policy_tensors(self.agent))
        tensors.update({f"agent/{k}": v for k, v in self.agent.state_tensors().items()})
        if self.intrinsic is not None:
            tensors.update({f"intrinsic/{k}": v for k, v in self.intrinsic.state_tensors().items()})
        return tensors

    def load_state_tensors(self, tensors: dict[str, torch.Tensor],
                           meta: dict[str, Any]) -> None:
        self.agent.load_state_tensors(sub_tensors(tensors, "agent/"), meta["agent_state"])
        if self.intrinsic is not None:
            self.intrinsic.load_state_tensors(sub_tensors(tensors, "intrinsic/"))

    # ------------------------------------------------------------------ evaluation
    def env_kwargs(self) -> dict[str, Any]:
        """The training env's ``make_env`` settings (:func:`train_env_kwargs`)."""
        return train_env_kwargs(self.cfg)

    def eval_policy(self) -> AgentPolicy:
        """The greedy policy being learned (a+ resolved by pi_p), for evaluation."""
        return AgentPolicy(self.agent, self.num_env_actions, epsilon=self.cfg.eval_epsilon,
                           prior=self.prior, seed=self.cfg.seed + 104_729,
                           # a reward-free learner's LSTM only ever saw r_e = 0
                           extrinsic_reward_input=not self.cfg.reward_free)

    def evaluate(self, logger: MetricsLogger) -> float:
        """Greedy evaluation (:meth:`eval_policy`, ``eval_episodes`` episodes) on the
        training env except the protocol's differences; logs an ``eval`` record."""
        returns = evaluate_policy(
            self.eval_policy(), self.cfg.env_id, num_episodes=self.cfg.eval_episodes,
            seed=self.cfg.seed + 1_000_003 + self.env_steps, frame_stack=self.frame_stack,
            num_envs=min(self.cfg.eval_episodes, 8),
            env_kwargs=eval_env_kwargs(self.env_kwargs()),
        )
        return self.log_eval(logger, returns)

    # ------------------------------------------------------------------ acting
    def before_loop(self) -> None:
        """The intrinsic reward's observation-statistics warm-up, at the start of a run."""
        if self.env_steps == 0:
            self.env_steps += self.collector.warm_up_intrinsic(
                self.cfg.intrinsic_warmup_env_steps, self.cfg.seed + 99_991)

    def drive(self, logger: MetricsLogger, progress: RunProgress) -> None:
        if self.cfg.backend == "ray":
            self._ray_loop(logger, progress)
        else:
            super().drive(logger, progress)

    def start_collecting(self) -> None:
        self.collector.begin(seed=self.cfg.seed + 31 * self.env_steps)
        self.replay.begin_stream()

    def collect_step(self, logger: MetricsLogger) -> None:
        """One collector step (acting in this process) written to replay."""
        record, episodes = self.collector.step(self.env_steps)
        record.add_to(self.replay)
        self._log_episodes(logger, episodes.returns, episodes.lengths, episodes.intrinsic)

    def _ray_loop(self, logger: MetricsLogger, progress: RunProgress) -> None:
        """Acting in ``num_actors`` Ray actors (:mod:`rltransfer.distributed`): while the
        actors step round ``k+1``, the learner writes round ``k`` into replay step by step,
        learning at the same replay ratio as the local loop."""
        from rltransfer.distributed import ActorPool, ActorResources, CollectorWorker

        cfg = self.cfg
        if self.env_steps >= cfg.total_env_steps:
            return
        self.replay.begin_stream()
        pool = ActorPool(CollectorWorker, to_dict(cfg), cfg.num_actors, cfg.actor_chunk_steps,
                         acting_tensors(self.agent, self.intrinsic),
                         seed=cfg.seed + 31 * self.env_steps, address=cfg.ray_address,
                         resources=ActorResources(cfg.ray_cpus_per_actor,
                                                  cfg.ray_gpus_per_actor, cfg.ray_learner_gpus))
        round_env_steps = cfg.actor_chunk_steps * cfg.num_envs
        synced_at = self.num_updates
        try:
            pool.request(self.env_steps)
            while self.env_steps < cfg.total_env_steps:
                got = pool.gather()
                weights = None
                if got is None or self.num_updates - synced_at >= cfg.actor_sync_period_updates:
                    weights = acting_tensors(self.agent, self.intrinsic)
                    synced_at = self.num_updates
                if got is None:  # an actor failed and was restarted: its round is dropped
                    logger.log("actors", self.env_steps, restarts=pool.restarts)
                    self.replay.begin_stream()
                    pool.request(self.env_steps, weights)
                    continue
                if self.env_steps + round_env_steps < cfg.total_env_steps:
                    pool.request(self.env_steps + round_env_steps, weights)
                self._consume_round(got, logger, progress)
        finally:
            pool.close()

    def _consume_round(self, got: Round, logger: MetricsLogger, progress: RunProgress) -> None:
        cfg = self.cfg
        steps = StepBatch.from_arrays(got.steps)
        if isinstance(self.intrinsic, (RND, NGUReward)):
            # Actors compute r_i with copies; the learner's observation statistics (sent
            # back with the weights) follow every actor's frames.
            self.intrinsic.update_obs_stats(steps.obs.reshape(-1, *self.frame_shape))
        for t in range(got.num_steps):
            if self.env_steps >= cfg.total_env_steps:
                break
            steps.at(t).add_to(self.replay)
            ended = got.ended_at(t)
            self._log_episodes(logger, ended["episode_return"], ended["episode_length"],
                               ended["episode_intrinsic"])
            self.env_steps += cfg.num_envs
            self._after_env_steps(logger, progress)

    # ------------------------------------------------------------------ learning
    def update(self) -> dict[str, float]:
        """One R2D2 update from replay; new priorities written back; the intrinsic reward's
        networks trained on the same batch."""
        batch = self.replay.sample(self.cfg.agent.batch_size, self.rng)
        result = self.agent.update(batch)
        if result.priorities is not None:
            self.replay.update_priorities(batch["indices"], result.priorities)
        metrics = result.metrics
        if self.intrinsic is not None:
            metrics.update(self._update_intrinsic(batch))
        return metrics

    def _update_intrinsic(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """Train the intrinsic reward's networks on the learner batch.

        NGU needs one-step triples ``(x_t, a_t, x_{t+1})`` for its inverse dynamics: from
        transitions, ``obs``'s newest frame, ``action`` and ``next_frame``; from sequences,
        ``batch_size`` consecutive in-episode pairs drawn from the sampled windows. RND and
        the constant reward take the frames ``x_{t+1}``.
        """
        c = self.frame_shape[0]
        if isinstance(self.replay, SequenceReplay):
            obs = batch["obs"]
            pairs = batch["valid"][:, :-1] & batch["in_episode"][:, 1:]
            rows, cols = np.nonzero(pairs)
            if rows.size == 0:
                return {}
            pick = self.rng.choice(rows.size, size=min(rows.size, self.cfg.agent.batch_size),
                                   replace=False)
            rows, cols = rows[pick], cols[pick]
            nxt = obs[rows, cols + 1, -c:]
            if isinstance(self.intrinsic, NGUReward):
                return self.intrinsic.update(
                    nxt, prev_obs_batch=obs[rows, cols, -c:],
                    actions=batch["action"][rows, cols],
                )
            assert self.intrinsic is not None
            return self.intrinsic.update(nxt)
        if isinstance(self.intrinsic, NGUReward):
            return self.intrinsic.update(
                batch["next_frame"], prev_obs_batch=batch["obs"][:, -c:],
                actions=batch["action"], valid=batch["next_frame_valid"],
            )
        assert self.intrinsic is not None
        return self.intrinsic.update(batch["next_obs"][:, -c:])


def train(cfg: TrainConfig, prior: Policy | None = None) -> RunResult:
    """Build a :class:`Trainer` for ``cfg`` (and, optionally, a pi_p object ``prior``, see
    :class:`Trainer`) and run it to completion (resuming if possible)."""
    return Trainer(cfg, prior=prior).run()
