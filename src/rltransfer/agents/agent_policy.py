"""A trained Q-learning agent seen as a :class:`~rltransfer.core.policy.Policy`, and loading one.

A pretrained artifact is a checkpoint directory whose ``meta.json`` says what it is (the
agent config, the observation shape and scale, the action counts), so a path is enough to
rebuild the network and act with it: ``load_policy("runs/pretrain")``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rltransfer.agents.r2d2.config import R2D2Config
from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.core.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    read_meta,
)
from rltransfer.core.config import ConfigError, from_dict
from rltransfer.core.policy import observe_step

POLICY_PREFIX = "policy/"
"""Checkpoint tensors under this prefix are the online networks, ``policy/<module>.<param>``."""


@dataclass
class RecurrentPolicyState:
    """State of an :class:`AgentPolicy` over a recurrent agent.

    Attributes:
        core: ``float32[B, D]`` LSTM state (h then c).
        prev_action: ``int64[B]`` the previous step's action (-1: none): the executed one
            once :meth:`AgentPolicy.observe` ran, else the one this policy returned.
        prior: the prior policy's own state (``None`` without a prior).
        prev_reward: ``float32[B]`` the previous step's extrinsic reward (0 until observed).
        prev_intrinsic: ``float32[B]`` the previous step's intrinsic reward (0 until
            observed).
    """

    core: np.ndarray
    prev_action: np.ndarray
    prior: Any = None
    prev_reward: np.ndarray | None = None
    prev_intrinsic: np.ndarray | None = None


class AgentPolicy:
    """Greedy (or epsilon-greedy) action selection from an :class:`R2D2Agent`'s Q-values.

    When the agent has the Behavior Transfer extra action a+ (its last Q column) and a
    ``prior`` policy is given, choosing a+ executes the prior's action (Campos et al. 2021,
    Sec. 3.2: the extra action "allows the agent to use the pre-trained policy at test time").

    A recurrent agent's LSTM takes the previous action and rewards (R2D2 / Agent57 inputs).
    Whoever steps the env should call :meth:`observe` after each step (through
    :func:`rltransfer.core.policy.observe_step`) with the executed actions and the step's rewards:
    as Behavior Transfer's pi_p this policy proposes an action on every step, but the
    learner's is executed on most of them, and the LSTM must see what really happened. A
    caller that never calls :meth:`observe` gets the old behaviour: the previous action is
    the one this policy returned and the previous rewards are 0.

    Args:
        agent: the Q-learner; its ``q_values`` take stacked ``uint8[B, C*S, H, W]``.
        num_env_actions: |A|; ``agent.num_actions`` is |A| or |A| + 1 (with a+).
        epsilon: probability of a uniformly random env action.
        prior: the pretrained policy pi_p that resolves a+ (required if the agent has a+).
        seed: seed of the epsilon draws.
        extrinsic_reward_input: feed observed extrinsic rewards to the LSTM. ``False`` feeds
            0, what an agent trained reward-free always saw (:func:`load_policy` sets it
            from the checkpoint's ``reward_free``), so a reward-free pi_p is not shown task
            rewards it never met.

    Raises:
        ValueError: if the agent has an extra action but no prior is given.
    """

    def __init__(
        self,
        agent: R2D2Agent,
        num_env_actions: int,
        epsilon: float = 0.0,
        prior: Any = None,
        seed: int = 0,
        extrinsic_reward_input: bool = True,
    ) -> None:
        self.agent = agent
        self.extrinsic_reward_input = bool(extrinsic_reward_input)
        self.num_actions = int(num_env_actions)
        self.has_extra = agent.num_actions == num_env_actions + 1
        if self.has_extra and prior is None:
            raise ValueError(
                "this agent has the extra action a+ (Behavior Transfer); pass the pretrained "
                "policy as prior= so a+ can be resolved"
            )
        self.epsilon = float(epsilon)
        self.prior = prior
        self.rng = np.random.default_rng(seed)

    def reset(self, num_envs: int) -> Any:
        """Initial state: the prior's (or ``None``) for a feedforward agent; for a recurrent
        agent a :class:`RecurrentPolicyState` (zero core state, no previous action)."""
        prior_state = self.prior.reset(num_envs) if self.prior is not None else None
        if not self.agent.recurrent:
            return prior_state
        return RecurrentPolicyState(
            core=self.agent.initial_state(num_envs),
            prev_action=np.full(num_envs, -1, dtype=np.int64),
            prior=prior_state,
            prev_reward=np.zeros(num_envs, dtype=np.float32),
            prev_intrinsic=np.zeros(num_envs, dtype=np.float32),
        )

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        """Greedy (or epsilon-greedy) env actions ``int64[B]`` and the next state.

        A recurrent agent's core is reset where ``first`` and otherwise fed the previous
        action and rewards held in the state (see :meth:`observe`). The prior, if any, acts
        on every step so that its own state stays current.
        """
        rec: RecurrentPolicyState | None = None
        if self.agent.recurrent:
            if not isinstance(state, RecurrentPolicyState):
                state = self.reset(obs.shape[0])
            rec = state
            q, core = self.agent.act_q(obs, rec.core, first, rec.prev_action,
                                       rec.prev_reward, rec.prev_intrinsic)
            state = rec.prior
        else:
            q = self.agent.q_values(obs)
        actions = q.argmax(axis=1).astype(np.int64)
        if self.prior is not None:
            prior_actions, state = self.prior.act(obs, state, first)
            if self.has_extra:
                use_prior = actions == self.num_actions
                actions = np.where(use_prior, prior_actions, actions)
        if self.epsilon > 0:
            explore = self.rng.random(obs.shape[0]) < self.epsilon
            random_actions = self.rng.integers(0, self.num_actions, size=obs.shape[0])
            actions = np.where(explore, random_actions, actions)
        actions = actions.astype(np.int64)
        if rec is not None:
            zeros = np.zeros(obs.shape[0], dtype=np.float32)
            return actions, RecurrentPolicyState(core=core, prev_action=actions, prior=state,
                                                 prev_reward=zeros, prev_intrinsic=zeros)
        return actions, state

    def observe(
        self,
        actions: np.ndarray,
        rewards_extrinsic: np.ndarray,
        rewards_intrinsic: np.ndarray,
        state: Any,
    ) -> Any:
        """Record the executed actions ``int64[B]`` and the step's rewards ``float[B]`` as
        the next step's previous action / rewards (recurrent agent), and pass them to the
        prior (:meth:`rltransfer.core.policy.ObservingPolicy.observe`). Returns the next state.
        """
        acts = np.asarray(actions, dtype=np.int64).reshape(-1)
        r_e = np.asarray(rewards_extrinsic, dtype=np.float32).reshape(-1)
        r_i = np.asarray(rewards_intrinsic, dtype=np.float32).reshape(-1)
        if not self.agent.recurrent:  # the state is the prior's (or None)
            return observe_step(self.prior, state, acts, r_e, r_i)
        if not isinstance(state, RecurrentPolicyState):
            raise ValueError("observe() needs the state act() returned for this step")
        prior_state = observe_step(self.prior, state.prior, acts, r_e, r_i)
        if not self.extrinsic_reward_input:
            r_e = np.zeros_like(r_e)
        return RecurrentPolicyState(core=state.core, prev_action=acts.copy(), prior=prior_state,
                                    prev_reward=r_e, prev_intrinsic=r_i)


def resolve_checkpoint(path: str | Path) -> Path:
    """Map a run directory or a checkpoint directory to the checkpoint to read.

    A run directory resolves to ``<run>/final`` if the run finished, else to its latest
    checkpoint under ``<run>/checkpoints``.

    Raises:
        CheckpointError: if nothing loadable is there.
    """
    p = Path(path)
    if (p / "meta.json").is_file():
        return p
    if (p / "final" / "meta.json").is_file():
        return p / "final"
    latest = latest_checkpoint(p / "checkpoints")
    if latest is not None:
        return latest
    raise CheckpointError(
        f"{p} is neither a checkpoint (no meta.json) nor a run directory with a final/ or "
        "checkpoints/ entry; pass the directory written by `rltransfer pretrain`"
    )


def agent_from_checkpoint(
    path: str | Path, device: str = "cpu"
) -> tuple[R2D2Agent, dict[str, Any]]:
    """Rebuild the agent a checkpoint describes and load its online networks.

    Returns:
        ``(agent, meta)``.

    Raises:
        CheckpointError: missing/corrupt/foreign checkpoint, or one that is not an agent.
    """
    ckpt = resolve_checkpoint(path)
    meta = read_meta(ckpt)
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or arch.get("kind") != "r2d2":
        raise CheckpointError(f"{ckpt} does not hold an R2D2 agent (architecture {arch!r})")
    try:
        config = from_dict(R2D2Config, arch["agent_config"], where=f"{ckpt}/meta.json")
    except (ConfigError, KeyError) as e:
        raise CheckpointError(f"{ckpt}: the agent config in meta.json is unusable: {e}") from e
    agent = R2D2Agent(
        config,
        obs_shape=tuple(arch["obs_shape"]),
        obs_scale=float(arch["obs_scale"]),
        num_actions=int(arch["num_actions"]),
        device=device,
        num_env_actions=int(arch.get("num_env_actions") or arch["num_actions"]),
    )
    tensors, _ = load_checkpoint(ckpt)
    load_policy_tensors(agent, tensors, modules=("torso", "core", "head"), source=str(ckpt))
    return agent, meta


def policy_tensors(agent: R2D2Agent) -> dict[str, torch.Tensor]:
    """The online networks as ``policy/<module>.<param>`` tensors (what transfer reads)."""
    out: dict[str, torch.Tensor] = {}
    for name, module in agent.named_modules_for_transfer().items():
        for key, value in module.state_dict().items():
            out[f"{POLICY_PREFIX}{name}.{key}"] = value
    return out


def load_policy_tensors(
    agent: R2D2Agent,
    tensors: dict[str, torch.Tensor],
    modules: tuple[str, ...],
    source: str,
) -> None:
    """Copy ``policy/<module>.*`` tensors into the agent's online (and target) modules.

    Raises:
        CheckpointError: a module is missing from the checkpoint, or a tensor's shape
            differs; the message names both sides. Nothing is copied in that case.
    """
    from rltransfer.errors import ComponentMismatchError, UnknownComponentError
    from rltransfer.methods.weight_transfer import (
        checkpoint_component_tensors,
        transfer_components,
    )

    try:
        transfer_components(agent, checkpoint_component_tensors(tensors), modules,
                            source=source)
    except (ComponentMismatchError, UnknownComponentError) as e:
        raise CheckpointError(str(e)) from e


def load_policy(
    path: str | Path, epsilon: float = 0.0, seed: int = 0, device: str = "cpu"
) -> AgentPolicy:
    """Load a pretrained agent as a frozen :class:`AgentPolicy` (pi_p for Behavior Transfer).

    Args:
        path: a checkpoint directory or a run directory (see :func:`resolve_checkpoint`).
        epsilon: probability of a random action when it acts.

    A recurrent policy trained reward-free (``config.reward_free`` in the checkpoint) is
    fed extrinsic rewards of 0, as in its training (``extrinsic_reward_input=False``).

    Raises:
        CheckpointError: see :func:`agent_from_checkpoint`; also if the pretrained agent
            itself needs a prior (it was trained with a+): such chains are not supported.
    """
    agent, meta = agent_from_checkpoint(path, device=device)
    for module in agent.named_modules_for_transfer().values():
        module.requires_grad_(False)
    num_env_actions = int(meta["architecture"]["num_env_actions"])
    if agent.num_actions != num_env_actions:
        raise CheckpointError(
            f"{path} was trained with the extra action a+; load its own prior instead"
        )
    trained_reward_free = bool((meta.get("config") or {}).get("reward_free", False))
    policy = AgentPolicy(agent, num_env_actions, epsilon=epsilon, seed=seed,
                         extrinsic_reward_input=not trained_reward_free)
    policy.obs_shape = tuple(meta["architecture"]["obs_shape"])  # type: ignore[attr-defined]
    policy.env_id = meta["architecture"].get("env_id")  # type: ignore[attr-defined]
    return policy
