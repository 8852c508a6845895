"""Batched EfficientZero Monte-Carlo tree search over a learned model.

Source: MuZero (Schrittwieser et al. 2020, Appendix B: pUCT with c1 = 1.25, c2 = 19652, Dirichlet
root noise alpha 0.3 / fraction 0.25, min-max normalised Q) with EfficientZero's changes
(Ye et al. 2021): value prefix instead of per-step rewards, a reward-LSTM hidden reset every
``value_prefix_horizon`` search depths, unvisited children valued at the parent's mean Q and a
floor on the min-max range. Hyperparameters as in XTRA (Xu et al. 2023, Table 4).

A batch of B roots is searched together: every simulation descends all B trees in one numba
kernel, calls ``model.recurrent_inference`` ONCE for the B new leaves, then expands and backs up
all B trees in a second kernel. Trees are preallocated arrays (see ``agents/mcts_kernels.py``);
latents and reward-LSTM states are torch tensors indexed by (node, batch row), node ``k + 1``
being the one expanded by simulation ``k``.

Choices worth knowing (documented deviations/decisions):

- The root is initialised with its network value as one visit (N = 1, value sum = v), as
  AlphaZero/mctx do, so ``root_values`` is the mean of the network value and the S backed-up
  returns, and the first selection already follows the prior (sqrt(N(root)) = 1).
- pUCT uses the parent's visit count N(n) (MuZero's formula), ties go to the lowest action index
  (EfficientZero breaks ties at random); search is therefore deterministic without noise.
- Min-max bounds per tree are updated with the Q of every non-root node on a backup path; the
  normalisation denominator is ``max(max - min, value_delta_min)`` with value_delta_min = 0.01
  (EfficientZero's value_delta_max) and the result is clipped to [0, 1]; before any bound is
  known every Q normalises to 0.
- The root has depth 0, a multiple of the horizon: its reward hidden is zeroed before the first
  call and its prefix counts as 0 (it is 0 anyway).
- Two masks. ``legal_actions`` (per root state) applies at the root only: illegal root
  actions are never selected, their prior is 0 (softmax over legal logits) and Dirichlet noise
  is drawn over the legal actions only. ``action_mask`` (per row: the game's legal ids inside a
  shared action space, XTRA, Xu et al. 2023) applies at EVERY node, root and interior: the
  policy logits are softmaxed over the masked ids only (illegal priors exactly 0) and an
  illegal action is never selected or expanded. Without masks all actions are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from rltransfer.agents.efficientzero import mcts_kernels
from rltransfer.core.config import ConfigError


class SearchInputError(ValueError):
    """A search input (root output, legal mask, model output) has the wrong shape or content."""


@dataclass
class ModelOutput:
    """One batched call of the world model, as the search sees it."""

    latent: torch.Tensor  # [B, *latent_shape], the hidden state s
    reward_hidden: tuple[torch.Tensor, torch.Tensor]  # value-prefix LSTM (h, c), each [1, B, H]
    value_prefix: np.ndarray  # float32 [B], scalar; zeros at the root
    value: np.ndarray  # float32 [B], scalar (support_to_scalar + h^-1 applied)
    policy_logits: np.ndarray  # float32 [B, A]


class SearchModel(Protocol):
    """What the search needs from a world model: dynamics g then prediction f, batched.

    ``recurrent_inference(latent [B, *latent_shape], (h, c) each [1, B, H], actions int64 [B])``
    returns the ModelOutput of the B successor states (value prefix accumulated from the given
    reward hidden).
    """

    def recurrent_inference(
        self,
        latent: torch.Tensor,
        reward_hidden: tuple[torch.Tensor, torch.Tensor],
        actions: torch.Tensor,
    ) -> ModelOutput: ...  # actions int64 [B]


@dataclass
class MCTSConfig:
    """Search hyperparameters (MuZero / EfficientZero defaults; XTRA Table 4)."""

    num_simulations: int = 50
    """Simulations per search (one model call each for the whole batch)."""
    pb_c_base: float = 19652.0
    """c2 of pUCT."""
    pb_c_init: float = 1.25
    """c1 of pUCT."""
    dirichlet_alpha: float = 0.3
    """Concentration of the root Dirichlet noise."""
    root_exploration_fraction: float = 0.25
    """Root prior = (1 - fraction) * prior + fraction * noise."""
    discount: float = 0.997  # per env step (agent step)
    """Discount per search depth, i.e. per agent step of the model."""
    value_prefix_horizon: int = 5  # reward LSTM hidden reset every this many search depths
    """Reward-LSTM hidden reset every this many search depths (EfficientZero lstm_horizon_len)."""
    value_delta_min: float = 0.01
    """Floor on (max - min) in the min-max normalisation of Q (EfficientZero value_delta_max)."""

    def __post_init__(self) -> None:
        problems = []
        if self.num_simulations < 1:
            problems.append(f"num_simulations must be >= 1 (got {self.num_simulations})")
        if self.value_prefix_horizon < 1:
            problems.append(f"value_prefix_horizon must be >= 1 (got {self.value_prefix_horizon})")
        if not 0.0 <= self.discount <= 1.0:
            problems.append(f"discount must be in [0, 1] (got {self.discount})")
        if not 0.0 <= self.root_exploration_fraction <= 1.0:
            problems.append(
                "root_exploration_fraction must be in [0, 1] "
                f"(got {self.root_exploration_fraction})"
            )
        for name in ("pb_c_base", "dirichlet_alpha", "value_delta_min"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0 (got {getattr(self, name)})")
        if self.pb_c_init < 0:
            problems.append(f"pb_c_init must be >= 0 (got {self.pb_c_init})")
        if problems:
            raise ConfigError("MCTSConfig: " + "; ".join(problems))


@dataclass
class SearchResult:
    """Output of one batched search."""

    visit_counts: np.ndarray  # int64 [B, A]
    root_values: np.ndarray  # float32 [B], the search's value estimate of each root
    policy: np.ndarray  # float32 [B, A], visit_counts normalised (the policy target)


@dataclass
class SearchTree:
    """The arrays of the last search (for inspection and tests); see ``mcts_kernels``.

    N = num_simulations + 1 nodes; node 0 is the root, node k + 1 was expanded by simulation k.
    """

    children: np.ndarray  # int32 [B, N, A], -1 = not expanded
    priors: np.ndarray  # float64 [B, N, A]
    visit_count: np.ndarray  # int64 [B, N]
    value_sum: np.ndarray  # float64 [B, N]
    value_prefix: np.ndarray  # float64 [B, N]
    is_reset: np.ndarray  # bool [B, N]
    depth: np.ndarray  # int64 [B, N]
    minmax: np.ndarray  # float64 [B, 2], (min, max) of backed-up Q
    root_prior_without_noise: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    """float64 [B, A], masked softmax of the root logits before Dirichlet noise."""


def _masked_softmax(logits: np.ndarray, legal: np.ndarray) -> np.ndarray:
    """Softmax over the legal entries of each row (illegal entries get 0). float64 [B, A]."""
    x = np.where(legal, logits.astype(np.float64), -np.inf)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


class BatchedMCTS:
    """Batched EfficientZero MCTS over B roots with one model call per simulation.

    Args:
        config: search hyperparameters.
        num_actions: A, size of the discrete action space (the width of policy_logits).

    Raises:
        ValueError: num_actions < 1.
    """

    def __init__(self, config: MCTSConfig, num_actions: int) -> None:
        if int(num_actions) < 1:
            raise ValueError(f"num_actions must be >= 1 (got {num_actions})")
        self.config = config
        self.num_actions = int(num_actions)
        self.tree: SearchTree | None = None
        """The tree arrays of the last search (None before the first search)."""

    def _check_output(
        self, out: ModelOutput, batch: int, what: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Validate one model output's shapes (the numba kernels do not bounds-check) and return
        (value_prefix, value, policy_logits) as contiguous float64 arrays."""
        if out.latent.shape[0] != batch:
            raise SearchInputError(
                f"{what}: latent has batch {out.latent.shape[0]}, expected {batch}"
            )
        h, c = out.reward_hidden
        if h.dim() != 3 or h.shape[0] != 1 or h.shape[1] != batch or c.shape != h.shape:
            raise SearchInputError(
                f"{what}: reward_hidden must be (h, c), each [1, {batch}, H]; "
                f"got {tuple(h.shape)} and {tuple(c.shape)}"
            )
        prefix = np.ascontiguousarray(out.value_prefix, dtype=np.float64)
        value = np.ascontiguousarray(out.value, dtype=np.float64)
        logits = np.ascontiguousarray(out.policy_logits, dtype=np.float64)
        if value.shape != (batch,) or prefix.shape != (batch,):
            raise SearchInputError(
                f"{what}: value and value_prefix must be [{batch}]; got "
                f"{value.shape} and {prefix.shape}"
            )
        if logits.shape != (batch, self.num_actions):
            raise SearchInputError(
                f"{what}: policy_logits must be [{batch}, {self.num_actions}]; "
                f"got {logits.shape}"
            )
        return prefix, value, logits

    def _mask(self, mask: np.ndarray | None, batch: int, name: str) -> np.ndarray:
        """A bool ``[B, A]`` mask (all True for None) with at least one True per row.

        Raises:
            SearchInputError: another shape or dtype, or a row without a True entry.
        """
        num_a = self.num_actions
        if mask is None:
            return np.ones((batch, num_a), dtype=np.bool_)
        arr = np.asarray(mask)
        if arr.shape != (batch, num_a) or arr.dtype != np.bool_:
            raise SearchInputError(
                f"{name} must be bool [{batch}, {num_a}]; got {arr.dtype} {arr.shape}"
            )
        if not arr.any(axis=1).all():
            raise SearchInputError(
                f"{name} has a row with no legal action; every root needs at least one"
            )
        return np.ascontiguousarray(arr)

    def search(
        self,
        model: SearchModel,
        root: ModelOutput,
        rng: np.random.Generator,
        add_exploration_noise: bool = True,
        legal_actions: np.ndarray | None = None,
        action_mask: np.ndarray | None = None,
    ) -> SearchResult:
        """Run ``config.num_simulations`` simulations from each of the B roots.

        Args:
            model: called once per simulation with the B leaves' parent latents [B, ...],
                reward hidden (h, c) [1, B, H] (zeros below a reset node) and actions int64 [B].
            root: the initial inference of the B root states (value_prefix is ignored: the root's
                prefix is 0 by definition).
            rng: source of the Dirichlet noise (drawn as one gamma array of shape [B, A], so a
                batch consumes the rng like its rows searched one after another).
            add_exploration_noise: mix Dirichlet(alpha) noise into the root priors (acting);
                False for evaluation and reanalyse.
            legal_actions: bool [B, A], actions allowed at the root (None: all).
            action_mask: bool [B, A], actions allowed at every node of row b's tree (a game's
                legal ids in a shared action space; None: all). Illegal ids get prior 0 at
                every node and are never selected; their visit counts are 0.

        Returns:
            SearchResult with root child visit counts int64 [B, A], root mean values float32 [B]
            and the normalised visit counts float32 [B, A].

        Raises:
            SearchInputError (a ValueError): wrong shapes, or a row with no legal action.
        """
        cfg = self.config
        num_a = self.num_actions
        batch = int(root.latent.shape[0])
        _, root_value, root_logits = self._check_output(root, batch, "root")
        node_legal = self._mask(action_mask, batch, "action_mask")
        legal = self._mask(legal_actions, batch, "legal_actions")
        if action_mask is not None:
            legal = np.ascontiguousarray(legal & node_legal)
            if not legal.any(axis=1).all():
                raise SearchInputError(
                    "legal_actions and action_mask leave a root with no legal action")

        num_sims = cfg.num_simulations
        num_nodes = num_sims + 1
        children = np.full((batch, num_nodes, num_a), -1, dtype=np.int32)
        priors = np.zeros((batch, num_nodes, num_a), dtype=np.float64)
        visit_count = np.zeros((batch, num_nodes), dtype=np.int64)
        value_sum = np.zeros((batch, num_nodes), dtype=np.float64)
        value_prefix = np.zeros((batch, num_nodes), dtype=np.float64)
        is_reset = np.zeros((batch, num_nodes), dtype=np.bool_)
        depth = np.zeros((batch, num_nodes), dtype=np.int64)
        minmax = np.empty((batch, 2), dtype=np.float64)
        minmax[:, 0] = np.inf
        minmax[:, 1] = -np.inf
        path = np.zeros((batch, num_nodes + 1), dtype=np.int64)
        path_len = np.zeros(batch, dtype=np.int64)
        parent = np.zeros(batch, dtype=np.int64)
        action = np.zeros(batch, dtype=np.int64)

        # Root: masked softmax prior (+ noise), the network value as its first visit.
        prior0 = _masked_softmax(root_logits, legal)
        root_prior = prior0
        if add_exploration_noise and cfg.root_exploration_fraction > 0:
            gam = rng.gamma(cfg.dirichlet_alpha, size=(batch, num_a)) * legal
            sums = gam.sum(axis=1, keepdims=True)
            # Gamma draws can underflow to 0 for tiny alpha; fall back to uniform over legal.
            noise = np.where(sums > 0, gam / np.where(sums > 0, sums, 1.0),
                             legal / legal.sum(axis=1, keepdims=True))
            frac = cfg.root_exploration_fraction
            root_prior = (1.0 - frac) * prior0 + frac * noise
        priors[:, 0] = root_prior
        visit_count[:, 0] = 1
        value_sum[:, 0] = root_value
        is_reset[:, 0] = True

        # Pools indexed by node * B + row (node k + 1 is written by simulation k).
        device = root.latent.device
        on_cpu = device.type == "cpu"
        latent_pool = root.latent.new_empty((num_nodes * batch, *root.latent.shape[1:]))
        latent_pool[:batch] = root.latent
        hidden_size = root.reward_hidden[0].shape[2]
        h_pool = root.reward_hidden[0].new_zeros((num_nodes * batch, hidden_size))
        c_pool = root.reward_hidden[1].new_zeros((num_nodes * batch, hidden_size))
        flat = np.zeros(batch, dtype=np.int64)
        reset_flat = np.zeros(batch, dtype=np.int64)
        horizon = cfg.value_prefix_horizon

        with torch.no_grad():
            for sim in range(num_sims):
                new = sim + 1
                n_reset = mcts_kernels.select_leaves(
                    children, priors, visit_count, value_sum, value_prefix, is_reset, minmax,
                    legal, node_legal, cfg.pb_c_base, cfg.pb_c_init, cfg.discount,
                    cfg.value_delta_min, horizon, new, path, path_len, parent, action, flat,
                    reset_flat,
                )
                flat_t = torch.from_numpy(flat)
                actions_t = torch.from_numpy(action.copy())
                if not on_cpu:
                    flat_t = flat_t.to(device)
                    actions_t = actions_t.to(device)
                hidden = (h_pool.index_select(0, flat_t).unsqueeze(0),
                          c_pool.index_select(0, flat_t).unsqueeze(0))
                out = model.recurrent_inference(latent_pool.index_select(0, flat_t), hidden,
                                                actions_t)
                prefix, value, logits = self._check_output(out, batch, f"simulation {sim}")
                lo, hi = new * batch, (new + 1) * batch
                latent_pool[lo:hi] = out.latent
                h_pool[lo:hi] = out.reward_hidden[0][0]
                c_pool[lo:hi] = out.reward_hidden[1][0]
                if n_reset:  # depth % horizon == 0: the new node's children start from zero
                    zero = torch.from_numpy(reset_flat[:n_reset].copy()).to(device)
                    h_pool.index_fill_(0, zero, 0.0)
                    c_pool.index_fill_(0, zero, 0.0)
                mcts_kernels.expand_and_backup(
                    new, children, priors, visit_count, value_sum, value_prefix, is_reset, depth,
                    minmax, path, path_len, parent, action, horizon, prefix, value, logits,
                    node_legal, cfg.discount,
                )

        self.tree = SearchTree(children, priors, visit_count, value_sum, value_prefix, is_reset,
                               depth, minmax, prior0)
        root_children = children[:, 0, :]
        counts = np.where(
            root_children >= 0,
            np.take_along_axis(visit_count, np.maximum(root_children, 0).astype(np.int64), axis=1),
            0,
        ).astype(np.int64)
        root_values = (value_sum[:, 0] / visit_count[:, 0]).astype(np.float32)
        policy = (counts / counts.sum(axis=1, keepdims=True)).astype(np.float32)
        return SearchResult(visit_counts=counts, root_values=root_values, policy=policy)


def select_action(
    visit_counts: np.ndarray,
    temperature: float,
    rng: np.random.Generator,
    deterministic: bool = False,
) -> np.ndarray:
    """Pick one action per row from MCTS visit counts (MuZero, Appendix D).

    Samples ``a ~ N(a)^(1/T) / sum_b N(b)^(1/T)`` (computed in log space, so small T does not
    overflow), or takes ``argmax N(a)`` (lowest index on ties) when ``deterministic`` (evaluation).

    Args:
        visit_counts: [B, A] non-negative counts (int or float), at least one positive per row.
        temperature: T > 0 (ignored when deterministic).
        rng: source of the sampling.
        deterministic: argmax instead of sampling.

    Returns:
        int64 [B] actions; an action with 0 visits is never chosen.

    Raises:
        ValueError: not 2-D, negative counts, a row without visits, or T <= 0 when sampling.
    """
    counts = np.asarray(visit_counts, dtype=np.float64)
    if counts.ndim != 2:
        raise ValueError(f"visit_counts must be [B, A]; got shape {counts.shape}")
    if (counts < 0).any() or not (counts.max(axis=1) > 0).all():
        raise ValueError("visit_counts must be >= 0 with at least one visit per row")
    if deterministic:
        return counts.argmax(axis=1).astype(np.int64)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling (got {temperature}); "
                         "use deterministic=True for argmax")
    with np.errstate(divide="ignore"):
        logp = np.log(counts) / float(temperature)
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    cdf = np.cumsum(p, axis=1)
    u = rng.random(counts.shape[0]) * cdf[:, -1]
    idx = (cdf <= u[:, None]).sum(axis=1)
    # Guard the upper edge and never land on a zero-probability action.
    idx = np.minimum(idx, counts.shape[1] - 1)
    bad = p[np.arange(counts.shape[0]), idx] == 0
    if bad.any():
        idx[bad] = p[bad].argmax(axis=1)
    return idx.astype(np.int64)
