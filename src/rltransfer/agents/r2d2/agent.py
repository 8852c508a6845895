"""R2D2-style Q-learning agent: feedforward core, or R2D2's LSTM core over replayed sequences.

Implements the learner of Kapturowski et al. 2019 ("Recurrent Experience Replay in
Distributed Reinforcement Learning", R2D2) as used by Behavior Transfer (Campos et al. 2021):

* network ``torso`` (conv encoder) -> ``core`` -> ``head`` (dueling, Wang et al. 2016);
* n-step double-Q targets with the invertible value rescaling ``h`` (Pohlen et al. 2018,
  "Observe and Look Further", Prop. A.2; R2D2 Sec. 2):
  ``y = h(sum_{k<n} gamma^k r_{t+k} + gamma^n h^-1(Q_target(s_{t+n}, argmax_a Q(s_{t+n}, a))))``;
* Adam (lr 1e-4, eps 1e-3), gradient-norm clipping at 40, target network copied every 2500
  updates, proportional priorities from |TD error| (exponents 0.9 / 0.6 in the replay);
* Behavior Transfer's extra action a+ (Campos et al. 2021, Sec. 3.2): when the agent chose a+
  and the environment executed a' ~ pi_p(s), the same target trains both Q(s, a+) and
  Q(s, a').

For transitions (feedforward core) the priority is |delta|; R2D2's sequence priority
``eta max_t|delta_t| + (1 - eta) mean_t|delta_t|`` (eta = 0.9) applies to the recurrent version.

Recurrent version (``core="lstm"``, R2D2 Sec. 3): the LSTM is fed ``[features, one-hot
a_{t-1}, r^e_{t-1}, r^i_{t-1}]`` (:class:`~rltransfer.nets.cores.LSTMCore`); the learner
samples sequences (:class:`~rltransfer.replay.SequenceReplay`) with the recurrent state stored
at their start, unrolls the burn-in prefix without gradient (online and target networks, from
the stored state), then the training part, and applies the n-step double-Q targets inside the
unrolled sequence (bootstrap Q at step ``t + n`` of the same unroll).

NGU policy family (Badia et al. 2020, Sec. 3 and App. F; Agent57): with ``num_policies = N >
1`` one network represents N Q-functions ``Q(x, a, j)``, policy ``j`` having intrinsic scale
``beta_j`` and discount ``gamma_j`` (:func:`rltransfer.agents.r2d2.config.policy_family`). The LSTM
core
also receives one-hot ``j``; the replay stores each step's ``j`` and computes the n-step
returns and discounts with ``gamma_j`` per sample (the learner reward ``r_e + beta_j r_i`` is
stored by the loop), so the learner update is unchanged apart from feeding ``j``. Acting uses
each actor's ``j``; calls without ``policy_index`` (evaluation, a loaded policy used as BT's
prior) act as ``eval_policy`` (default 0: the exploitative ``beta_0 = 0``, ``gamma_0 =
gamma``). The family needs the LSTM core (a feedforward agent raises ConfigError for N > 1).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rltransfer.core.checkpoint_components import (
    apply_frozen,
    carry_optimizer_state,
    check_component_names,
    component_tensors,
    load_optimizer_state,
    optimizer_tensors,
    summarise_problems,
    tensor_problems,
)
from rltransfer.core.config import ConfigError
from rltransfer.nets.cores import FeedforwardCore, LSTMCore
from rltransfer.nets.encoders import ENCODER_KINDS, make_torso
from rltransfer.nets.heads import DuelingHead, QHead
from rltransfer.nets.value_transforms import inverse_value_rescale, value_rescale

MODULE_NAMES: tuple[str, ...] = ("torso", "core", "head")
"""Names of the agent's modules, in forward order (what weight transfer loads or freezes)."""


class NonFiniteLossError(RuntimeError):
    """The loss (or its gradient) was NaN/inf; the update was not applied."""


@dataclass
class R2D2Config:
    """Learner hyperparameters; defaults from R2D2 (Kapturowski et al. 2019, Table 2).

    These field defaults are the Atari suite's. ``rltransfer train`` / ``pretrain`` and
    :func:`rltransfer.agents.r2d2.config.suite_config` start ``gamma``, ``n_step``, ``lr``,
    ``adam_eps``
    and ``target_update_period_updates`` from the env's suite defaults instead
    (:data:`rltransfer.agents.r2d2.config.SUITE_DEFAULTS`; MiniGrid: lr 1e-3, Adam eps 1e-6, gamma
    0.9,
    target copy every 250 updates); values the user sets win.

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


@torch.no_grad()
def n_step_double_q_target(
    n_step_return: torch.Tensor,
    bootstrap_discount: torch.Tensor,
    q_next_online: torch.Tensor | None,
    q_next_target: torch.Tensor,
    *,
    double_q: bool = True,
    value_rescaling: bool = True,
    eps: float = 1e-3,
) -> torch.Tensor:
    """n-step (double) Q-learning target with value rescaling (R2D2, Sec. 2).

    ``y = h(R_n + disc * h^-1(Q_target(s', a*)))`` with ``a* = argmax_a Q_online(s', a)``
    (double Q, van Hasselt et al. 2016) or ``argmax_a Q_target(s', a)`` (``double_q=False``);
    ``h`` is the identity when ``value_rescaling`` is off.

    Args:
        n_step_return: ``float[B]``, ``sum_{k<m} gamma^k r_{t+k}``.
        bootstrap_discount: ``float[B]``, ``gamma^m``, or 0 after a termination.
        q_next_online: ``float[B, A]`` online Q at the bootstrap state (ignored unless
            ``double_q``; may be ``None`` then).
        q_next_target: ``float[B, A]`` target-network Q at the bootstrap state (in the
            rescaled space when ``value_rescaling``).
        double_q, value_rescaling, eps: see :class:`R2D2Config`.

    Returns:
        ``float[B]`` targets (no gradient).

    Raises:
        ValueError: ``double_q`` without ``q_next_online``, or mismatched shapes.
    """
    return _double_q_target(n_step_return, bootstrap_discount, q_next_online, q_next_target,
                            double_q=double_q, value_rescaling=value_rescaling, eps=eps)


def _double_q_target(
    n_step_return: torch.Tensor,
    bootstrap_discount: torch.Tensor,
    q_next_online: torch.Tensor | None,
    q_next_target: torch.Tensor,
    *,
    double_q: bool,
    value_rescaling: bool,
    eps: float,
) -> torch.Tensor:
    """:func:`n_step_double_q_target` without its ``no_grad`` wrapper (for callers already
    under ``torch.no_grad()``)."""
    if q_next_target.dim() != 2 or q_next_target.shape[0] != n_step_return.shape[0]:
        raise ValueError(
            f"q_next_target must be [B, A] with B={n_step_return.shape[0]}, got "
            f"{list(q_next_target.shape)}"
        )
    if double_q:
        if q_next_online is None or q_next_online.shape != q_next_target.shape:
            raise ValueError("double_q needs q_next_online with the shape of q_next_target")
        a_star = q_next_online.argmax(dim=1, keepdim=True)
    else:
        a_star = q_next_target.argmax(dim=1, keepdim=True)
    q_boot = q_next_target.gather(1, a_star).squeeze(1)
    if value_rescaling:
        q_boot = inverse_value_rescale(q_boot, eps)
    y = n_step_return + bootstrap_discount * q_boot
    return value_rescale(y, eps) if value_rescaling else y


def sequence_priority(abs_td: torch.Tensor, mask: torch.Tensor, eta: float) -> torch.Tensor:
    """R2D2's sequence priority ``eta max_t |d_t| + (1 - eta) mean_t |d_t|`` (Sec. 2).

    Args:
        abs_td: ``float[N, L]`` absolute TD errors.
        mask: ``bool[N, L]``, the steps that count; a row without any gives 0.
        eta: the mix (R2D2: 0.9).

    Returns:
        ``float[N]``.
    """
    m = mask.to(abs_td.dtype)
    d = abs_td * m
    mean = d.sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
    return eta * d.max(dim=1).values + (1.0 - eta) * mean


class R2D2Agent:
    """R2D2-style Q-learner over stacked image observations (feedforward core).

    Args:
        config: hyperparameters.
        obs_shape: stacked observation shape ``(C*S, H, W)``.
        obs_scale: divisor mapping ``uint8`` observations to ``[0, 1]``.
        num_actions: Q outputs; |A|, or |A| + 1 with Behavior Transfer's a+ as the LAST index.
        device: torch device for the networks.
        num_env_actions: |A| (the LSTM core's previous-action one-hot width); default
            ``num_actions``. Pass |A| when ``num_actions`` includes a+.

    Attributes:
        online: ``nn.ModuleDict`` with ``torso``, ``core``, ``head``; ``target`` a copy.
        num_updates: gradient updates applied.
        last_priorities: ``float32[B]`` new priorities (max |TD error| per transition) of the
            latest :meth:`update`, for ``replay.update_priorities(batch["indices"], ...)``.
        frozen: names of modules excluded from training.

    Raises:
        ValueError: invalid shapes or counts.
    """

    def __init__(
        self,
        config: R2D2Config,
        obs_shape: tuple[int, ...],
        obs_scale: float,
        num_actions: int,
        device: str | torch.device = "cpu",
        num_env_actions: int | None = None,
    ) -> None:
        if len(obs_shape) != 3:
            raise ValueError(f"obs_shape must be stacked (C*S, H, W), got {obs_shape}")
        if num_actions < 1:
            raise ValueError(f"num_actions must be >= 1, got {num_actions}")
        self.config = config
        self.obs_shape: tuple[int, int, int] = (
            int(obs_shape[0]), int(obs_shape[1]), int(obs_shape[2])
        )
        self.obs_scale = float(obs_scale)
        self.num_actions = int(num_actions)
        self.device = torch.device(device)
        torso = make_torso(
            self.obs_shape, self.obs_scale, config.feature_dim, kind=config.torso
        )
        self.num_env_actions = int(num_env_actions) if num_env_actions is not None else (
            self.num_actions
        )
        if not 1 <= self.num_env_actions <= self.num_actions:
            raise ValueError(
                f"num_env_actions must be in [1, num_actions={self.num_actions}], got "
                f"{num_env_actions}"
            )
        self.recurrent = config.core == "lstm"
        core: nn.Module = (
            LSTMCore(torso.out_dim, self.num_env_actions, config.lstm_hidden,
                     reward_inputs=config.core_reward_inputs,
                     num_policies=config.num_policies)
            if self.recurrent else FeedforwardCore(torso.out_dim, config.hidden)
        )
        core_out = int(core.out_dim)  # type: ignore[arg-type]
        head: nn.Module = (
            DuelingHead(core_out, config.hidden, self.num_actions) if config.dueling
            else QHead(core_out, config.hidden, self.num_actions)
        )
        self.online = nn.ModuleDict({"torso": torso, "core": core, "head": head}).to(self.device)
        self.target = copy.deepcopy(self.online)
        self.target.requires_grad_(False)
        self.frozen: set[str] = set()
        self.num_updates = 0
        self.last_priorities = np.zeros(0, dtype=np.float32)
        self._opt_param_names: list[str] = []
        self.optimizer = self._make_optimizer()

    # ------------------------------------------------------------------ modules
    @property
    def torso(self) -> nn.Module:
        """Online encoder: ``uint8[B, C*S, H, W]`` -> ``float32[B, feature_dim]``."""
        return self.online["torso"]

    @property
    def core(self) -> nn.Module:
        """Online core: ``(features, state) -> (out, state)``."""
        return self.online["core"]

    @property
    def head(self) -> nn.Module:
        """Online Q head: ``float32[B, hidden]`` -> ``float32[B, num_actions]``."""
        return self.online["head"]

    def named_modules_for_transfer(self) -> dict[str, nn.Module]:
        """The online ``{'torso', 'core', 'head'}`` modules (load into them, then
        :meth:`sync_target`)."""
        return {name: self.online[name] for name in MODULE_NAMES}

    def named_components(self) -> dict[str, nn.Module]:
        """Online ``torso``, ``core``, ``head`` (:class:`rltransfer.core.types.Agent`)."""
        return {name: self.online[name] for name in MODULE_NAMES}

    def target_components(self) -> dict[str, nn.Module]:
        """Target ``torso``, ``core``, ``head`` (:class:`rltransfer.core.types.Agent`)."""
        return {name: self.target[name] for name in MODULE_NAMES}

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """``[Adam]`` over the trainable components (:class:`rltransfer.core.types.Agent`)."""
        return [self.optimizer]

    def sync_target(self) -> None:
        """Copy the online parameters into the target network."""
        self.target.load_state_dict(self.online.state_dict())

    def set_frozen(self, names: Iterable[str]) -> None:
        """Freeze exactly ``names`` (requires_grad off, out of the optimizer); unfreeze others.

        The optimizer is rebuilt; Adam moments of parameters that stay trainable are kept.

        Raises:
            UnknownComponentError: unknown module names (a ``ValueError``).
            ValueError: freezing every module.
        """
        wanted = set(check_component_names(names, MODULE_NAMES, "freeze"))
        if wanted == set(MODULE_NAMES):
            raise ValueError("cannot freeze every module: nothing would train; freeze fewer")
        old = self.optimizer
        self.frozen = wanted
        self.optimizer = self._make_optimizer()
        carry_optimizer_state(old, self.optimizer)

    def freeze(self, module_names: Iterable[str]) -> None:
        """Freeze ``module_names`` in addition to the already frozen ones (see set_frozen)."""
        self.set_frozen(self.frozen | set(module_names))

    def _make_optimizer(self) -> torch.optim.Adam:
        trainable = apply_frozen(self.named_components(), self.frozen)
        params = [p for _, p in trainable]
        self._opt_param_names = [name for name, _ in trainable]
        # Not fused: with fused=True (torch 2.13, CPU) the agent stopped learning
        # MiniGrid-Empty-5x5 (tests/test_train.py), although short runs matched plain Adam.
        # foreach: the same per-tensor arithmetic with fewer Python calls; fixed-seed runs
        # give bit-identical parameters to the single-tensor loop (docs/decisions.md).
        return torch.optim.Adam(params, lr=self.config.lr, eps=self.config.adam_eps,
                                foreach=True)

    # ------------------------------------------------------------------ acting
    def _obs_tensor(self, obs: Any, what: str = "obs") -> torch.Tensor:
        a = np.asarray(obs)
        if a.ndim != 4 or tuple(a.shape[1:]) != self.obs_shape:
            raise ValueError(
                f"{what} must be [B, {', '.join(map(str, self.obs_shape))}] (stacked frames), "
                f"got {list(a.shape)}"
            )
        return torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    @staticmethod
    def _forward(net: nn.ModuleDict, obs: torch.Tensor) -> torch.Tensor:
        features = net["torso"](obs)
        out, _ = net["core"](features, None)
        return net["head"](out)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Online Q-values, no gradient.

        Args:
            obs: ``uint8[B, C*S, H, W]`` stacked observations.

        Returns:
            ``float32[B, num_actions]`` (in the value-rescaled space when enabled; argmax is
            unaffected since h is monotonic).

        Raises:
            ValueError: wrong observation shape; a recurrent agent (use :meth:`act_q`).
        """
        if self.recurrent:
            raise ValueError("this agent has an LSTM core: use act_q(obs, state, first, ...)")
        # inference_mode: no_grad without autograd's version counters (the networks keep
        # no state between calls, so no inference tensor reaches a training step).
        with torch.inference_mode():
            q = self._forward(self.online, self._obs_tensor(obs))
        return q.float().cpu().numpy()

    @property
    def state_dim(self) -> int:
        """Width ``D`` of the recurrent state ``float32[B, D]`` (0 for a feedforward core)."""
        return int(getattr(self.online["core"], "state_dim", 0))

    def initial_state(self, batch_size: int) -> np.ndarray:
        """The recurrent state at an episode start: zeros ``float32[B, D]`` (``D = 0``
        for a feedforward core)."""
        return np.zeros((int(batch_size), self.state_dim), dtype=np.float32)

    def act_q(
        self,
        obs: np.ndarray,
        state: np.ndarray | None,
        first: np.ndarray,
        prev_action: np.ndarray | None = None,
        prev_reward: np.ndarray | None = None,
        prev_intrinsic_reward: np.ndarray | None = None,
        policy_index: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One acting step of the online network, no gradient (recurrent or feedforward).

        Where ``first`` the state is reset to zeros and the previous action / rewards are
        ignored (an episode's first step has none), as the replay rebuilds them.

        Args:
            obs: ``uint8[B, C*S, H, W]`` stacked observations.
            state: ``float32[B, D]`` from :meth:`initial_state` or the previous call (``None``:
                zeros).
            first: ``bool[B]``, true where an episode just began.
            prev_action: ``int[B]`` env action of the previous step (-1 or ``None``: none).
            prev_reward: ``float[B]`` extrinsic reward of the previous step (``None``: 0).
            prev_intrinsic_reward: ``float[B]`` intrinsic reward of the previous step.
            policy_index: ``int[B]`` NGU policy ``j`` of each env in ``[0, num_policies)``
                (``None``: ``config.eval_policy``); ignored when ``num_policies = 1``.

        Returns:
            ``(q float32[B, num_actions], next_state float32[B, D])``.

        Raises:
            ValueError: wrong shapes or policy indices.
        """
        x = self._obs_tensor(obs)
        b = x.shape[0]
        if not self.recurrent:
            with torch.inference_mode():
                q = self._forward(self.online, x)
            return q.float().cpu().numpy(), self.initial_state(b)
        st = np.asarray(state if state is not None else self.initial_state(b), np.float32)
        if st.shape != (b, self.state_dim):
            raise ValueError(f"state must be float32[{b}, {self.state_dim}], got {st.shape}")
        f = torch.as_tensor(np.asarray(first, bool).reshape(-1), device=self.device)
        if f.shape[0] != b:
            raise ValueError(f"first must be bool[{b}], got {f.shape[0]} entries")

        def opt(v: Any, dtype: torch.dtype, fill: float) -> torch.Tensor:
            t = torch.full((b,), fill, dtype=dtype, device=self.device) if v is None else (
                torch.as_tensor(np.asarray(v), device=self.device).to(dtype).reshape(-1)
            )
            return torch.where(f, torch.full_like(t, fill), t)

        j = self._policy_tensor(policy_index, (b,))

        with torch.no_grad():
            features = self.online["torso"](x)
            out, new_state = self.online["core"](
                features, torch.as_tensor(st, device=self.device),
                prev_action=opt(prev_action, torch.int64, -1),
                prev_reward=opt(prev_reward, torch.float32, 0.0),
                prev_intrinsic_reward=opt(prev_intrinsic_reward, torch.float32, 0.0),
                first=f, policy_index=j,
            )
            q = self.online["head"](out)
        return q.float().cpu().numpy(), new_state.float().cpu().numpy()

    def _policy_tensor(self, policy_index: Any, shape: tuple[int, ...]) -> torch.Tensor | None:
        """``int64`` policy indices of ``shape`` on the device (``None`` -> ``eval_policy``);
        ``None`` for a single policy. Raises ValueError on a wrong shape or range."""
        n = self.config.num_policies
        if n == 1:
            return None
        if policy_index is None:
            return torch.full(shape, self.config.eval_policy, dtype=torch.int64,
                              device=self.device)
        a = np.asarray(policy_index)
        if a.shape != shape:
            raise ValueError(f"policy_index must be int{list(shape)}, got {list(a.shape)}")
        if a.size and (not np.issubdtype(a.dtype, np.integer) or a.min() < 0 or a.max() >= n):
            raise ValueError(f"policy_index must be integers in [0, {n}), got {a}")
        return torch.as_tensor(a, device=self.device).to(torch.int64)

    # ------------------------------------------------------------------ learning
    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """One gradient step on a replay batch.

        Loss: ``mean_i 0.5 w_i (delta_i^2 + extra_i delta+_i^2)`` where
        ``delta_i = Q(s_i, action_i) - y_i``, ``delta+_i = Q(s_i, agent_action_i) - y_i`` (the
        a+ entry; Campos et al. 2021 Sec. 3.2), ``y`` from :func:`n_step_double_q_target`
        and ``w`` the importance weights. New priorities ``max(|delta_i|, extra_i |delta+_i|)``
        go to :attr:`last_priorities`.

        Args:
            batch: :meth:`TransitionReplay.sample` output: ``obs``, ``next_obs``
                ``uint8[B, C*S, H, W]``; ``action`` ``int[B]``; ``n_step_return``,
                ``bootstrap_discount`` ``float[B]``; optional ``agent_action`` (default
                ``action``), ``extra`` (default false), ``weights`` (default 1).

        Returns:
            metrics: ``loss``, ``q_mean`` (mean Q(s, action)), ``target_mean``,
            ``td_abs_mean`` (mean |delta|), ``grad_norm`` (before clipping).

        Raises:
            KeyError: a required key is missing. ValueError: bad shapes or actions.
            NonFiniteLossError: NaN/inf loss or gradient; parameters, optimizer state and
                ``num_updates`` are left unchanged.
        """
        if self.recurrent:
            return self._update_sequences(batch)
        cfg = self.config
        for key in ("obs", "next_obs", "action", "n_step_return", "bootstrap_discount"):
            if key not in batch:
                raise KeyError(f"update batch lacks {key!r} (use TransitionReplay.sample)")
        obs = self._obs_tensor(batch["obs"], "obs")
        next_obs = self._obs_tensor(batch["next_obs"], "next_obs")
        b = obs.shape[0]

        # Checked and converted in numpy: one array op each, no tensor round trips.
        def vec(key: str, default: Any, dtype: Any) -> np.ndarray:
            value = np.asarray(batch[key] if key in batch else default, dtype=dtype).reshape(-1)
            if value.shape[0] != b:
                raise ValueError(f"batch[{key!r}] has {value.shape[0]} entries, obs has {b}")
            return value

        action_np = vec("action", None, np.int64)
        agent_np = vec("agent_action", None, np.int64) if "agent_action" in batch else action_np
        extra_np = vec("extra", np.zeros(b, bool), bool)
        checks = [("action", action_np)]
        if agent_np is not action_np:
            checks.append(("agent_action", agent_np))
        for name, a in checks:
            if b and (int(a.min()) < 0 or int(a.max()) >= self.num_actions):
                raise ValueError(
                    f"batch[{name!r}] outside [0, {self.num_actions}): {int(a.min())}.."
                    f"{int(a.max())}; is num_actions |A|+1 when the extra action is on?"
                )
        dev = self.device
        action = torch.as_tensor(action_np, device=dev)
        ret = torch.as_tensor(vec("n_step_return", None, np.float32), device=dev)
        disc = torch.as_tensor(vec("bootstrap_discount", None, np.float32), device=dev)
        weights = torch.as_tensor(vec("weights", np.ones(b, np.float32), np.float32), device=dev)

        # inference_mode: the targets need no autograd bookkeeping at all; ``y`` only enters
        # differences with Q, whose backward does not save it.
        with torch.inference_mode():
            q_next_target = self._forward(self.target, next_obs)
            q_next_online = self._forward(self.online, next_obs) if cfg.double_q else None
            y = _double_q_target(
                ret, disc, q_next_online, q_next_target, double_q=cfg.double_q,
                value_rescaling=cfg.value_rescaling, eps=cfg.value_rescaling_eps,
            )
        q = self._forward(self.online, obs)
        q_env = q.gather(1, action[:, None]).squeeze(1)
        delta = q_env - y
        if extra_np.any():
            q_agent = q.gather(1, torch.as_tensor(agent_np, device=dev)[:, None]).squeeze(1)
            extra = torch.as_tensor(extra_np, device=dev)
            delta_plus = torch.where(extra, q_agent - y, torch.zeros_like(y))
            loss = (0.5 * weights * (delta.square() + delta_plus.square())).mean()
        else:
            # Without a+ in the batch delta+ is 0: the same loss, gradient and priorities
            # (x + 0 and max(|x|, 0) are exact) without the a+ branch's ops.
            delta_plus = None
            loss = (0.5 * weights * delta.square()).mean()
        loss_value, grad_norm = self._optimize(loss)
        with torch.no_grad():
            delta_abs = delta.abs()
            prio = delta_abs if delta_plus is None else torch.maximum(delta_abs,
                                                                      delta_plus.abs())
            q_mean, target_mean, td_abs_mean = torch.stack(
                [q_env.mean(), y.mean(), delta_abs.mean()]).tolist()
        self.last_priorities = prio.float().cpu().numpy()
        return {
            "loss": loss_value,
            "q_mean": q_mean,
            "target_mean": target_mean,
            "td_abs_mean": td_abs_mean,
            "grad_norm": grad_norm,
        }

    def _optimize(self, loss: torch.Tensor) -> tuple[float, float]:
        """Backward, clip, Adam step, target sync; the NaN guard of :meth:`update`.

        Returns ``(loss, gradient norm before clipping)`` as floats."""
        cfg = self.config
        update_number = self.num_updates + 1
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"non-finite loss ({loss_value}) at update {update_number}; the update was "
                "skipped and parameters are unchanged. Check rewards/observations for NaN/inf, "
                "lower lr, or keep value_rescaling on"
            )
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        for p in params:  # zero_grad(set_to_none=True) without its profiler/hook wrapper
            p.grad = None
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"non-finite gradient norm at update {update_number} (loss {loss_value}); the "
                "update was skipped and parameters are unchanged. Lower lr or check inputs"
            )
        self.optimizer.step()
        self.num_updates = update_number
        if self.num_updates % cfg.target_update_period_updates == 0:
            self.sync_target()
        return loss_value, grad_norm

    # ------------------------------------------------------------------ sequences
    def unroll(
        self,
        net: nn.ModuleDict,
        batch: dict[str, np.ndarray],
        *,
        grad: bool,
    ) -> torch.Tensor:
        """Q-values over the training part of replayed sequences (R2D2 Sec. 3, burn-in).

        The burn-in prefix (window steps ``[0, burn_in)``) is unrolled without gradient from
        the stored state ``batch["core_state"]``; steps outside the episode (front padding,
        where the episode started inside the prefix) leave the state unchanged. The training
        part (``[burn_in, T)``) is then unrolled in one LSTM call from that (detached) state.

        Args:
            net: ``self.online`` or ``self.target``.
            batch: :meth:`SequenceReplay.sample` output (keys ``obs``, ``prev_action``,
                ``prev_reward``, ``prev_intrinsic_reward``, ``in_episode``, ``core_state``;
                ``policy_index`` ``int[N, T]`` when ``num_policies > 1``).
            grad: keep the graph of the training part.

        Returns:
            ``float32[N, L, num_actions]``, ``L = T - burn_in``.

        Raises:
            ValueError: the window length is not ``burn_in + sequence_length``; bad
                ``policy_index``.
            KeyError: ``policy_index`` missing with ``num_policies > 1``.
        """
        cfg = self.config
        obs = np.asarray(batch["obs"])
        n, t_len = obs.shape[:2]
        bi = cfg.burn_in
        if t_len != bi + cfg.sequence_length or tuple(obs.shape[2:]) != self.obs_shape:
            raise ValueError(
                f"sequence obs must be [N, {bi + cfg.sequence_length}, "
                f"{', '.join(map(str, self.obs_shape))}] (burn_in + sequence_length), got "
                f"{list(obs.shape)}; build the replay with the agent's sequence settings"
            )
        dev = self.device

        def tm(key: str, dtype: torch.dtype) -> torch.Tensor:  # time-major [T, N]
            return torch.as_tensor(np.asarray(batch[key]), device=dev).to(dtype).T.contiguous()

        x = torch.as_tensor(np.ascontiguousarray(obs.swapaxes(0, 1)), device=dev)
        prev_a = tm("prev_action", torch.int64)
        prev_r = tm("prev_reward", torch.float32)
        prev_ri = tm("prev_intrinsic_reward", torch.float32)
        in_ep = tm("in_episode", torch.bool)
        pol: torch.Tensor | None = None
        if self.config.num_policies > 1:
            if "policy_index" not in batch:
                raise KeyError("sequence batch lacks 'policy_index' (num_policies > 1); build "
                               "SequenceReplay with policy_gammas and add(policy_index=...)")
            pol = self._policy_tensor(batch["policy_index"], (n, t_len))
            assert pol is not None
            pol = pol.T.contiguous()
        state = torch.as_tensor(np.asarray(batch["core_state"], np.float32), device=dev)
        if tuple(state.shape) != (n, self.state_dim):
            raise ValueError(f"core_state must be [{n}, {self.state_dim}], got {list(state.shape)}")
        core = net["core"]
        if bi:
            with torch.no_grad():
                feats = net["torso"](x[:bi].reshape(bi * n, *self.obs_shape)).reshape(bi, n, -1)
                if bool(in_ep[:bi].all()):  # no front padding: one LSTM call
                    _, state = core(feats, state, prev_a[:bi], prev_r[:bi], prev_ri[:bi],
                                    policy_index=None if pol is None else pol[:bi])
                else:
                    for k in range(bi):
                        _, new = core(feats[k], state, prev_a[k], prev_r[k], prev_ri[k],
                                      policy_index=None if pol is None else pol[k])
                        state = torch.where(in_ep[k, :, None], new, state)
        state = state.detach()
        with torch.set_grad_enabled(grad):
            length = t_len - bi
            feats = net["torso"](x[bi:].reshape(length * n, *self.obs_shape)).reshape(length, n, -1)
            out, _ = core(feats, state, prev_a[bi:], prev_r[bi:], prev_ri[bi:],
                          policy_index=None if pol is None else pol[bi:])
            q = net["head"](out.reshape(length * n, -1)).reshape(length, n, -1)
        return q.transpose(0, 1)

    def _update_sequences(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        """:meth:`update` for the LSTM core: one gradient step on replayed sequences.

        For training step ``t`` of a sequence (``loss_mask``),
        ``y_t = h(R_t + disc_t h^-1(Q_target(s_b, argmax_a Q(s_b, a))))`` with ``b =
        bootstrap_index_t`` inside the same unroll, ``delta_t = Q(s_t, a_t) - y_t`` and, where
        ``extra_t`` (a+), ``delta+_t = Q(s_t, a+) - y_t``. Loss: ``mean_i w_i
        sum_t mask 0.5 (delta^2 + delta+^2) / max(1, sum_t mask)``. Priority (R2D2 Sec. 2):
        ``eta max_t |d_t| + (1 - eta) mean_t |d_t|`` over masked steps, ``|d_t| =
        max(|delta_t|, |delta+_t|)``, to :attr:`last_priorities`.

        Args:
            batch: :meth:`SequenceReplay.sample` output; window arrays ``[N, T]``:
                ``action``, ``agent_action``, ``extra``, ``n_step_return``,
                ``bootstrap_discount``, ``bootstrap_index`` (window index), ``loss_mask``;
                plus what :meth:`unroll` reads and ``weights`` ``float32[N]``.

        Raises:
            KeyError: a required key is missing. ValueError: bad shapes or actions.
            NonFiniteLossError: see :meth:`update`.
        """
        cfg = self.config
        for key in ("obs", "action", "n_step_return", "bootstrap_discount", "bootstrap_index",
                    "loss_mask", "core_state", "prev_action", "in_episode"):
            if key not in batch:
                raise KeyError(f"sequence batch lacks {key!r} (use SequenceReplay.sample)")
        bi, dev = cfg.burn_in, self.device
        n = np.asarray(batch["obs"]).shape[0]

        def part(key: str, dtype: torch.dtype, default: Any = None) -> torch.Tensor:
            v = np.asarray(batch[key]) if key in batch else default
            t = torch.as_tensor(v, device=dev).to(dtype)
            if t.dim() != 2 or t.shape[0] != n:
                raise ValueError(f"batch[{key!r}] must be [N={n}, T], got {list(t.shape)}")
            return t[:, bi:]

        action = part("action", torch.int64)
        agent_action = part("agent_action", torch.int64, batch["action"])
        extra = part("extra", torch.bool, np.zeros(np.shape(batch["action"]), bool))
        ret = part("n_step_return", torch.float32)
        disc = part("bootstrap_discount", torch.float32)
        boot = part("bootstrap_index", torch.int64) - bi
        mask = part("loss_mask", torch.bool)
        weights = torch.as_tensor(
            np.asarray(batch.get("weights", np.ones(n, np.float32))), device=dev
        ).to(torch.float32).reshape(-1)
        length = action.shape[1]
        act_m = torch.where(mask, action, torch.zeros_like(action))
        agent_m = torch.where(mask, agent_action, torch.zeros_like(agent_action))
        for name, a in (("action", act_m), ("agent_action", agent_m)):
            if a.numel() and (int(a.min()) < 0 or int(a.max()) >= self.num_actions):
                raise ValueError(
                    f"batch[{name!r}] outside [0, {self.num_actions}) at training steps; is "
                    "num_actions |A|+1 when the extra action is on?"
                )
        boot = torch.where(mask, boot, torch.zeros_like(boot))
        if boot.numel() and (int(boot.min()) < 0 or int(boot.max()) >= length):
            raise ValueError("bootstrap_index must point inside the training part of the window")

        q = self.unroll(self.online, batch, grad=True)  # [N, L, A]
        with torch.no_grad():
            q_target = self.unroll(self.target, batch, grad=False)
            gather_idx = boot[:, :, None].expand(-1, -1, q.shape[2])
            q_next_target = q_target.gather(1, gather_idx).reshape(n * length, -1)
            q_next_online = (
                q.detach().gather(1, gather_idx).reshape(n * length, -1) if cfg.double_q
                else None
            )
            y = n_step_double_q_target(
                ret.reshape(-1), disc.reshape(-1), q_next_online, q_next_target,
                double_q=cfg.double_q, value_rescaling=cfg.value_rescaling,
                eps=cfg.value_rescaling_eps,
            ).reshape(n, length)
        q_env = q.gather(2, act_m[:, :, None]).squeeze(2)
        q_agent = q.gather(2, agent_m[:, :, None]).squeeze(2)
        maskf = mask.to(q.dtype)
        delta = (q_env - y) * maskf
        delta_plus = torch.where(extra & mask, q_agent - y, torch.zeros_like(y))
        count = maskf.sum(dim=1).clamp(min=1.0)
        per_seq = (0.5 * (delta.square() + delta_plus.square())).sum(dim=1) / count
        loss = (weights * per_seq).mean()
        loss_value, grad_norm = self._optimize(loss)
        with torch.no_grad():
            d = torch.maximum(delta.abs(), delta_plus.abs())
            prio = sequence_priority(d, mask, cfg.priority_eta)
        self.last_priorities = prio.float().cpu().numpy()
        total = float(maskf.sum().clamp(min=1.0))
        return {
            "loss": loss_value,
            "q_mean": float((q_env.detach() * maskf).sum()) / total,
            "target_mean": float((y * maskf).sum()) / total,
            "td_abs_mean": float(delta.detach().abs().sum()) / total,
            "grad_norm": float(grad_norm),
        }

    # ------------------------------------------------------------------ checkpoints
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Everything needed to resume, as flat CPU tensors (safetensors-ready, no pickle).

        Keys: ``online.<module>.<param>``, ``target.<module>.<param>``,
        ``optimizer.<module>.<param>.<exp_avg|exp_avg_sq|step>`` (Adam state of trainable
        parameters that have been updated), ``num_updates`` ``int64[1]``, ``frozen``
        ``uint8[3]`` (torso, core, head).
        """
        out = component_tensors(self.named_components(), "online.", ".")
        out.update(component_tensors(self.target_components(), "target.", "."))
        out.update(optimizer_tensors(self.optimizer, self._opt_names_by_id(), "optimizer."))
        out["num_updates"] = torch.tensor([self.num_updates], dtype=torch.int64)
        out["frozen"] = torch.tensor([n in self.frozen for n in MODULE_NAMES], dtype=torch.uint8)
        return out

    def state_meta(self) -> dict[str, Any]:
        """JSON-able scalars describing the state (for ``meta.json``): counters, frozen
        modules, optimizer hyperparameters, shapes."""
        group = self.optimizer.param_groups[0]
        return {
            "num_updates": self.num_updates,
            "frozen": sorted(self.frozen),
            "optimizer": {
                "type": "Adam",
                "lr": float(group["lr"]),
                "eps": float(group["eps"]),
                "betas": [float(x) for x in group["betas"]],
                "weight_decay": float(group["weight_decay"]),
            },
            "obs_shape": list(self.obs_shape),
            "obs_scale": self.obs_scale,
            "num_actions": self.num_actions,
            "num_env_actions": self.num_env_actions,
            "core": self.config.core,
            "num_policies": self.config.num_policies,
        }

    def load_state_tensors(
        self, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None = None
    ) -> None:
        """Restore :meth:`state_tensors` output (and optionally check :meth:`state_meta`).

        Raises:
            ValueError: missing or unexpected keys, shape mismatches, or ``meta`` describing
                another agent. Checked before anything is changed.
        """
        if meta is not None:
            mine = self.state_meta()
            for key in ("obs_shape", "num_actions", "num_env_actions", "core", "num_policies"):
                if key in meta and list(np.atleast_1d(meta[key])) != list(
                    np.atleast_1d(mine[key])
                ):
                    raise ValueError(
                        f"agent state was saved with {key}={meta[key]}, this agent has "
                        f"{mine[key]}; build the agent with the saved spaces"
                    )
        problems: list[str] = []
        for prefix, net in (("online.", self.online), ("target.", self.target)):
            given = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            problems += tensor_problems(given, net.state_dict(), prefix)
        for key in ("num_updates", "frozen"):
            if key not in tensors:
                problems.append(f"missing {key}")
        all_names = [
            f"{m}.{n}" for m in MODULE_NAMES for n, _ in self.online[m].named_parameters()
        ]
        opt: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith(("online.", "target.")):
                continue  # checked above
            if key.startswith("optimizer."):
                rest = key[len("optimizer."):]
                pname, _, field = rest.rpartition(".")
                if pname not in all_names:
                    problems.append(f"unexpected {key}")
                else:
                    opt.setdefault(pname, {})[field] = value
            elif key not in ("num_updates", "frozen"):
                problems.append(f"unexpected {key}")
        if problems:
            raise ValueError("agent state does not fit this agent: "
                             + summarise_problems(problems, 8))
        frozen = {n for n, f in zip(MODULE_NAMES, tensors["frozen"].tolist(), strict=True) if f}
        if frozen & {p.split(".", 1)[0] for p in opt}:
            raise ValueError("agent state has optimizer moments for a frozen module")

        with torch.no_grad():
            for prefix, net in (("online", self.online), ("target", self.target)):
                net.load_state_dict(
                    {k: tensors[f"{prefix}.{k}"] for k in net.state_dict()}, strict=True
                )
        self.frozen = frozen
        self.optimizer = self._make_optimizer()
        load_optimizer_state(self.optimizer, self._opt_names_by_id(), opt, self.device)
        self.num_updates = int(tensors["num_updates"].reshape(-1)[0])

    def _param_list(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]

    def _opt_names_by_id(self) -> dict[int, str]:
        """``id(parameter) -> <module>.<name>`` of the optimized parameters."""
        return {id(p): n for p, n in zip(self._param_list(), self._opt_param_names, strict=True)}
