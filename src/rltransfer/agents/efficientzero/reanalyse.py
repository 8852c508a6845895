"""EfficientZero training targets from replay, with reanalysis by the target network.

For each sampled position ``t`` (see :class:`rltransfer.replay.game_segment.GameSegmentReplay`)
this module builds an :class:`EZBatch` with ``K`` unroll steps:

* **Value-prefix targets** (EfficientZero, Ye et al. 2021, Sec. 4.2): the reward LSTM predicts
  the sum of rewards since its hidden state was last reset; the hidden state is reset every
  ``H`` = ``value_prefix_horizon`` unroll steps (EZ ``lstm_horizon_len`` = 5). The target after
  unroll step ``k`` (actions ``a_t .. a_{t+k-1}``, ``k = 1..K``) is
  ``sum_{j=s(k)}^{k-1} r_{t+j}`` with ``s(k) = H * floor((k-1)/H)``: undiscounted, as in EZ
  (the horizon is short and gamma close to 1). Rewards after the episode's last step are 0.
* **n-step value targets** (MuZero; EZ Sec. 4.3 "MCTS root value" and "off-policy
  correction"): for ``k = 0..K``,
  ``z_{t+k} = sum_{i<l} gamma^i r_{t+k+i} + gamma^l v_{t+k+l}``, where ``v`` is re-estimated now
  with the **target** network. Default ``value_target="root"``: the root value of a fresh
  search (no exploration noise) from ``o_{t+k+l}`` with the target model, as the paper's
  Sec. 4.3 specifies; ``"network"``: the target network's value prediction ``f(h(o))`` (cheaper,
  MuZero Reanalyze). At episode ends: the sum stops at the episode's last step; a terminated
  episode adds no bootstrap (``z`` is the discounted rest of the rewards, 0 past the end); a
  truncated episode bootstraps from its final observation (the autoreset slot), and positions
  past a truncation get ``v(final observation)``.
* **Off-policy correction** (EZ Sec. 4.3, the rule of the public EZ code expressed in env
  steps): ``l = clip(n - floor(age / (tau * T)), 1, n)`` where ``n`` = ``td_steps`` (5),
  ``age`` = env steps (all envs together) collected since the position was stored, ``T`` =
  the run's total env steps and ``tau = 0.3``. The same ``l`` is used for all ``K + 1``
  targets of a sample. Atari100k: data older than 30k env steps uses ``l = 4``, older than
  60k ``l = 3``, older than 90k ``l = 2``.
* **Policy targets**: for a ``reanalyse_fraction`` of the batch (EZ "reanalyzed policy ratio"
  1.0), the visit distribution of a fresh search with the target model (with root Dirichlet
  noise, as EZ's reanalysis does) at ``t .. t+K``; for the rest, the stored self-play search
  policies. Zero past the episode end (``mask`` 0).
* **Actions** past the episode end are uniformly random (EZ pads them so), ``mask`` 0 there.
* ``mask[k] = 1`` when ``t+k`` is a step of the episode at which an action was taken.
* ``future_obs`` at ``t+k`` for ``k = 1..K``: the stacked observation; past the episode end
  the final observation's stack is repeated (masked out by the learner).
* **Shared action space** (``adapter``, XTRA; :mod:`.shared_space`): the replay holds local
  ids and local policies; the batch gets union ids (``local_to_union``), policy targets
  scattered into the union width and channel-padded observations; fresh searches run over the
  union width with the game's illegal ids masked at every node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch

from rltransfer.agents.efficientzero.batch import EZBatch
from rltransfer.agents.efficientzero.mcts import BatchedMCTS, MCTSConfig, ModelOutput
from rltransfer.agents.efficientzero.shared_space import GameAdapter
from rltransfer.replay.game_segment import GameSegmentReplay


class TargetModel(Protocol):
    """What reanalysis needs from a world model (an ``EfficientZeroNet``)."""

    def initial_inference(self, obs: torch.Tensor) -> ModelOutput: ...

    def recurrent_inference(
        self,
        latent: torch.Tensor,
        reward_hidden: tuple[torch.Tensor, torch.Tensor],
        actions: torch.Tensor,
    ) -> ModelOutput: ...


@dataclass
class ReanalyseConfig:
    """How targets are re-estimated (EfficientZero, Ye et al. 2021, Sec. 4.3 and Table 4).

    Attributes:
        reanalyse_fraction: fraction of each batch whose policy targets come from a fresh
            search with the target model (EZ: 1.0); the rest use stored self-play policies.
        value_target: ``"root"`` (EZ paper: root value of a fresh search at the bootstrap
            observation) or ``"network"`` (the target network's value prediction).
        off_policy_tau: ``tau`` of the off-policy correction (EZ: 0.3); 0 turns it off
            (always ``td_steps``).
        inference_batch_size: largest number of observations per target-network call/search.
    """

    reanalyse_fraction: float = 1.0
    value_target: Literal["root", "network"] = "root"
    off_policy_tau: float = 0.3
    inference_batch_size: int = 1024


def value_prefix_targets(rewards: np.ndarray, horizon: int) -> np.ndarray:
    """Value-prefix targets for unroll steps ``1..K`` (EfficientZero Sec. 4.2).

    Args:
        rewards: ``float[N, K]``, ``r_t .. r_{t+K-1}`` (zero after the episode's last step).
        horizon: ``H`` >= 1, the reward LSTM reset interval in unroll steps.

    Returns:
        ``float32[N, K]``; column ``k-1`` is ``sum_{j=H*floor((k-1)/H)}^{k-1} r_{t+j}``.

    Raises:
        ValueError: ``horizon < 1`` or ``rewards`` not 2-D.
    """
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"rewards must be [N, K], got shape {r.shape}")
    if horizon < 1:
        raise ValueError(f"value_prefix_horizon must be >= 1, got {horizon}")
    k = r.shape[1]
    cums = np.cumsum(r, axis=1)
    block_start = (np.arange(k) // horizon) * horizon
    before = np.zeros_like(cums)
    has_before = block_start > 0
    before[:, has_before] = cums[:, block_start[has_before] - 1]
    return (cums - before).astype(np.float32)


def off_policy_td_steps(
    age_env_steps: np.ndarray, td_steps: int, total_env_steps: int, tau: float
) -> np.ndarray:
    """TD horizon per sample after EfficientZero's off-policy correction (Sec. 4.3).

    ``l = clip(td_steps - floor(age / (tau * total_env_steps)), 1, td_steps)``; with
    ``tau <= 0`` the correction is off and ``l = td_steps``.

    Args:
        age_env_steps: ``int[N]`` env steps collected since each position was stored.
        td_steps: ``n`` >= 1.
        total_env_steps: the run's length in env steps (>= 1).
        tau: fraction of the run after which the horizon shrinks by one.

    Returns:
        ``int64[N]`` in ``[1, td_steps]``.
    """
    age = np.asarray(age_env_steps, dtype=np.float64)
    if td_steps < 1 or total_env_steps < 1:
        raise ValueError(f"td_steps and total_env_steps must be >= 1, got {td_steps}, "
                         f"{total_env_steps}")
    if tau <= 0:
        return np.full(age.shape, td_steps, dtype=np.int64)
    shrink = np.floor(age / (tau * total_env_steps)).astype(np.int64)
    return np.clip(td_steps - shrink, 1, td_steps).astype(np.int64)


def bootstrap_plan(
    episode_end: np.ndarray, terminal: np.ndarray, td: np.ndarray, unroll_steps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where each of the ``K + 1`` value targets starts and bootstraps (offsets from ``t``).

    ``start_k = min(k, l_end + 1)`` (positions past the end use the final observation),
    ``boot_k = min(start_k + td, l_end + 1)`` and a value is needed at ``boot_k`` unless the
    episode terminated there.

    Args:
        episode_end: ``int[N]`` offset of the episode's last step (``Segment.episode_end``,
            or :data:`~rltransfer.replay.game_segment.NOT_ENDED`).
        terminal: ``bool[N]`` the episode terminated at ``episode_end``.
        td: ``int[N]`` TD horizon per sample.
        unroll_steps: ``K``.

    Returns:
        ``(start int64[N, K+1], boot int64[N, K+1], use_value bool[N, K+1])``.
    """
    ks = np.arange(unroll_steps + 1)[None, :]
    final = np.asarray(episode_end, dtype=np.int64)[:, None] + 1
    start = np.minimum(ks, final)
    boot = np.minimum(start + np.asarray(td, dtype=np.int64)[:, None], final)
    use_value = ~(np.asarray(terminal, dtype=bool)[:, None] & (boot == final))
    return start, boot, use_value


def n_step_value_targets(
    rewards: np.ndarray,
    start: np.ndarray,
    boot: np.ndarray,
    use_value: np.ndarray,
    bootstrap_values: np.ndarray,
    discount: float,
) -> np.ndarray:
    """``z = sum_{j=start}^{boot-1} gamma^(j-start) r_j + [use_value] gamma^(boot-start) v``.

    Args:
        rewards: ``float[N, W]`` window rewards (zero after the episode's last step).
        start, boot, use_value: from :func:`bootstrap_plan`, ``[N, K+1]``.
        bootstrap_values: ``float[N, K+1]``, the value estimate at ``boot`` (ignored where
            ``use_value`` is false).
        discount: gamma per env step.

    Returns:
        ``float32[N, K+1]``.
    """
    r = np.asarray(rewards, dtype=np.float64)
    j = np.arange(r.shape[1])[None, None, :]
    st, bt = start[..., None], boot[..., None]
    in_range = (j >= st) & (j < bt)
    powers = discount ** np.clip(j - st, 0, None).astype(np.float64)
    ret = np.where(in_range, powers * r[:, None, :], 0.0).sum(axis=-1)
    boot_term = discount ** (boot - start).astype(np.float64) * np.asarray(
        bootstrap_values, dtype=np.float64
    )
    return (ret + np.where(use_value, boot_term, 0.0)).astype(np.float32)


class Reanalyser:
    """Samples positions from a :class:`GameSegmentReplay` and builds ``EZBatch`` targets.

    Args:
        replay: the game-segment replay (its ``unroll_steps`` / ``td_steps`` are K and n).
        mcts_config: search settings for reanalysis (its ``discount`` must equal
            ``discount``).
        discount: gamma per env step.
        value_prefix_horizon: ``H`` (EZ: 5).
        total_env_steps: the run's length, for the off-policy correction.
        config: :class:`ReanalyseConfig`.
        device: torch device of the target network.
        adapter: the game inside a shared action space (its ``num_legal`` must be the
            replay's ``num_actions``); batches are then in the network's union width and
            padded channels. None: the replay's own actions and frames.

    Raises:
        ValueError: inconsistent settings (the message names the field).
    """

    def __init__(
        self,
        replay: GameSegmentReplay,
        mcts_config: MCTSConfig,
        *,
        discount: float,
        value_prefix_horizon: int,
        total_env_steps: int,
        config: ReanalyseConfig | None = None,
        device: str = "cpu",
        adapter: GameAdapter | None = None,
    ) -> None:
        self.config = config or ReanalyseConfig()
        if not 0.0 <= self.config.reanalyse_fraction <= 1.0:
            raise ValueError(
                f"reanalyse_fraction must be in [0, 1], got {self.config.reanalyse_fraction}"
            )
        if self.config.value_target not in ("root", "network"):
            raise ValueError(
                f"value_target must be 'root' or 'network', got {self.config.value_target!r}"
            )
        if self.config.inference_batch_size < 1:
            raise ValueError("inference_batch_size must be >= 1")
        if abs(mcts_config.discount - discount) > 1e-12:
            raise ValueError(
                f"MCTS discount {mcts_config.discount} differs from the learner's {discount}; "
                "set both to the same per-env-step discount"
            )
        if value_prefix_horizon < 1:
            raise ValueError(f"value_prefix_horizon must be >= 1, got {value_prefix_horizon}")
        self.replay = replay
        self.num_actions = replay.num_actions
        self.unroll_steps = replay.unroll_steps
        self.td_steps = replay.td_steps
        self.discount = float(discount)
        self.horizon = int(value_prefix_horizon)
        self.total_env_steps = int(total_env_steps)
        if adapter is not None and adapter.num_legal != replay.num_actions:
            raise ValueError(f"the adapter's game has {adapter.num_legal} actions, the replay "
                             f"stores {replay.num_actions}")
        self.adapter = adapter if adapter is not None and not adapter.is_identity else None
        width = replay.num_actions if self.adapter is None else self.adapter.num_actions
        self.mcts = BatchedMCTS(mcts_config, width)
        self.device = torch.device(device)

    # ------------------------------------------------------------------ public
    def make_batch(
        self,
        target_model: TargetModel,
        batch_size: int,
        rng: np.random.Generator,
        importance_exponent: float,
    ) -> EZBatch:
        """Sample ``batch_size`` positions by priority and compute their targets.

        Args:
            target_model: the learner's target network (used in eval mode, no gradients).
            batch_size: ``B``.
            rng: numpy Generator (sampling, random padding actions, search noise).
            importance_exponent: beta of the importance weights.

        Returns:
            :class:`EZBatch` on the CPU (shapes in its docstring).

        Raises:
            ValueError: the replay has nothing to sample yet.
        """
        indices, weights = self.replay.sample(batch_size, rng, importance_exponent)
        return self.targets(target_model, indices, weights, rng)

    def targets(
        self,
        target_model: TargetModel,
        indices: np.ndarray,
        weights: np.ndarray,
        rng: np.random.Generator,
    ) -> EZBatch:
        """Targets for given sampleable replay ``indices`` (see :meth:`make_batch`)."""
        replay, k_un = self.replay, self.unroll_steps
        seg = replay.segment(indices)
        n = seg.envs.shape[0]
        ks = np.arange(k_un + 1)[None, :]
        inside = ks <= seg.episode_end[:, None]  # [N, K+1]
        mask = inside.astype(np.float32)

        actions = np.where(inside[:, :k_un], seg.actions,
                           rng.integers(0, self.num_actions, size=(n, k_un)))
        prefixes = value_prefix_targets(seg.rewards[:, :k_un], self.horizon)

        td = off_policy_td_steps(seg.age_env_steps, self.td_steps, self.total_env_steps,
                                 self.config.off_policy_tau)
        start, boot, use_value = bootstrap_plan(seg.episode_end, seg.terminal, td, k_un)
        boot_values = np.zeros(start.shape, dtype=np.float64)
        if use_value.any():
            rows, cols = np.nonzero(use_value)
            values, _ = self._evaluate(
                target_model, seg.envs[rows], seg.steps[rows] + boot[rows, cols],
                search=self.config.value_target == "root", noise=False, rng=rng,
            )
            boot_values[rows, cols] = values
        target_values = n_step_value_targets(seg.rewards, start, boot, use_value, boot_values,
                                             self.discount)

        policies = np.where(inside[..., None], seg.policies, 0.0).astype(np.float32)
        n_re = round(self.config.reanalyse_fraction * n)
        if n_re > 0:
            re_inside = inside.copy()
            re_inside[n_re:] = False
            rows, cols = np.nonzero(re_inside)
            if rows.size:
                _, fresh = self._evaluate(
                    target_model, seg.envs[rows], seg.steps[rows] + cols,
                    search=True, noise=True, rng=rng,
                )
                policies[rows, cols] = fresh

        final = np.minimum(seg.episode_end, self.replay.window) + 1  # offset of final obs
        future_offsets = np.minimum(np.arange(1, k_un + 1)[None, :], final[:, None])
        obs = replay.stacked_obs(seg.envs, seg.steps)
        future = replay.stacked_obs(
            np.repeat(seg.envs, k_un), (seg.steps[:, None] + future_offsets).reshape(-1)
        ).reshape(n, k_un, *replay.stacked_shape)
        if self.adapter is not None:
            obs, future = self.adapter.network_obs(obs), self.adapter.network_obs(future)
            actions = self.adapter.union_actions(actions.astype(np.int64))
            policies = self.adapter.union_policy(policies)
        return EZBatch(
            obs=torch.from_numpy(obs),
            future_obs=torch.from_numpy(future),
            actions=torch.from_numpy(actions.astype(np.int64)),
            target_value_prefixes=torch.from_numpy(prefixes),
            target_values=torch.from_numpy(target_values),
            target_policies=torch.from_numpy(policies),
            mask=torch.from_numpy(mask),
            weights=torch.from_numpy(np.asarray(weights, dtype=np.float32)),
            indices=np.asarray(indices, dtype=np.int64),
        )

    # ------------------------------------------------------------------ internals
    @torch.no_grad()
    def _evaluate(
        self,
        model: TargetModel,
        envs: np.ndarray,
        steps: np.ndarray,
        *,
        search: bool,
        noise: bool,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Values ``float64[M]`` and policies ``float32[M, A]`` (the replay's local ids) at
        stored (env, step) pairs.

        Duplicated positions are evaluated once. With ``search`` the value is the root value
        of a fresh search and the policy its visit distribution; without, the network's
        value and softmax policy (over the legal ids' logits with an adapter).
        """
        key = envs.astype(np.int64) * (self.replay.num_added + 1) + steps.astype(np.int64)
        uniq, first_idx, inverse = np.unique(key, return_index=True, return_inverse=True)
        u_envs, u_steps = envs[first_idx], steps[first_idx]
        values = np.zeros(uniq.shape[0], dtype=np.float64)
        policies = np.zeros((uniq.shape[0], self.num_actions), dtype=np.float32)
        chunk = self.config.inference_batch_size
        module = model if isinstance(model, torch.nn.Module) else None
        was_training = module.training if module is not None else False
        if module is not None:
            module.eval()
        try:
            for lo in range(0, uniq.shape[0], chunk):
                hi = min(lo + chunk, uniq.shape[0])
                obs = self.replay.stacked_obs(u_envs[lo:hi], u_steps[lo:hi])
                adapter = self.adapter
                if adapter is not None:
                    obs = adapter.network_obs(obs)
                root = model.initial_inference(torch.from_numpy(obs).to(self.device))
                if search:
                    mask = None if adapter is None else adapter.search_mask(hi - lo)
                    if mask is None:
                        result = self.mcts.search(model, root, rng, add_exploration_noise=noise)
                    else:
                        result = self.mcts.search(model, root, rng, add_exploration_noise=noise,
                                                  action_mask=mask)
                    values[lo:hi] = result.root_values
                    policies[lo:hi] = (result.policy if adapter is None
                                       else adapter.local(result.policy))
                else:
                    values[lo:hi] = root.value
                    logits = root.policy_logits.astype(np.float64)
                    if adapter is not None:
                        logits = adapter.local(logits)
                    logits -= logits.max(axis=1, keepdims=True)
                    p = np.exp(logits)
                    policies[lo:hi] = p / p.sum(axis=1, keepdims=True)
        finally:
            if module is not None:
                module.train(was_training)
        return values[inverse.reshape(-1)], policies[inverse.reshape(-1)]
