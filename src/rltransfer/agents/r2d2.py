"""R2D2-style Q-learning agent (feedforward core for now; the LSTM core slots into ``core``).

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
``eta max|delta| + (1 - eta) mean|delta|`` (eta = 0.9) applies to the recurrent version.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rltransfer.nets.cores import FeedforwardCore
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
    """R2D2 sequence-priority mix (unused by the feedforward agent: transitions use |delta|)."""
    priority_exponent: float = 0.9
    """alpha of proportional prioritized replay."""
    importance_exponent: float = 0.6
    """beta of the importance-sampling weights."""

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
        if self.torso not in ENCODER_KINDS:
            problems.append(
                f"torso must be one of {', '.join(ENCODER_KINDS)} (got {self.torso!r})"
            )
        if problems:
            raise ValueError("invalid R2D2Config: " + "; ".join(problems))


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


class R2D2Agent:
    """R2D2-style Q-learner over stacked image observations (feedforward core).

    Args:
        config: hyperparameters.
        obs_shape: stacked observation shape ``(C*S, H, W)``.
        obs_scale: divisor mapping ``uint8`` observations to ``[0, 1]``.
        num_actions: Q outputs; |A|, or |A| + 1 with Behavior Transfer's a+ as the LAST index.
        device: torch device for the networks.

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
        core = FeedforwardCore(torso.out_dim, config.hidden)
        head: nn.Module = (
            DuelingHead(core.out_dim, config.hidden, self.num_actions) if config.dueling
            else QHead(core.out_dim, config.hidden, self.num_actions)
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

    def sync_target(self) -> None:
        """Copy the online parameters into the target network."""
        self.target.load_state_dict(self.online.state_dict())

    def set_frozen(self, names: set[str]) -> None:
        """Freeze exactly ``names`` (requires_grad off, out of the optimizer); unfreeze others.

        The optimizer is rebuilt; Adam moments of parameters that stay trainable are kept.

        Raises:
            ValueError: unknown module names, or freezing every module.
        """
        names = set(names)
        unknown = names - set(MODULE_NAMES)
        if unknown:
            raise ValueError(f"cannot freeze {sorted(unknown)}: modules are {list(MODULE_NAMES)}")
        if names == set(MODULE_NAMES):
            raise ValueError("cannot freeze every module: nothing would train; freeze fewer")
        old_state = dict(self.optimizer.state)
        self.frozen = names
        self.optimizer = self._make_optimizer()
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                if p in old_state:
                    self.optimizer.state[p] = old_state[p]

    def freeze(self, module_names: set[str] | tuple[str, ...] | list[str]) -> None:
        """Freeze ``module_names`` in addition to the already frozen ones (see set_frozen)."""
        self.set_frozen(self.frozen | set(module_names))

    def _make_optimizer(self) -> torch.optim.Adam:
        params: list[nn.Parameter] = []
        self._opt_param_names = []
        for name in MODULE_NAMES:
            trainable = name not in self.frozen
            module = self.online[name]
            module.requires_grad_(trainable)
            if trainable:
                for pname, p in module.named_parameters():
                    params.append(p)
                    self._opt_param_names.append(f"{name}.{pname}")
        # Not fused: with fused=True (torch 2.13, CPU) the agent stopped learning
        # MiniGrid-Empty-5x5 (tests/test_train.py), although short runs matched plain Adam.
        return torch.optim.Adam(params, lr=self.config.lr, eps=self.config.adam_eps)

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
            ValueError: wrong observation shape.
        """
        with torch.no_grad():
            q = self._forward(self.online, self._obs_tensor(obs))
        return q.float().cpu().numpy()

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
        cfg = self.config
        for key in ("obs", "next_obs", "action", "n_step_return", "bootstrap_discount"):
            if key not in batch:
                raise KeyError(f"update batch lacks {key!r} (use TransitionReplay.sample)")
        obs = self._obs_tensor(batch["obs"], "obs")
        next_obs = self._obs_tensor(batch["next_obs"], "next_obs")
        b = obs.shape[0]

        def vec(key: str, default: Any, dtype: torch.dtype) -> torch.Tensor:
            value = np.asarray(batch[key]) if key in batch else default
            t = torch.as_tensor(value, dtype=dtype, device=self.device).reshape(-1)
            if t.shape[0] != b:
                raise ValueError(f"batch[{key!r}] has {t.shape[0]} entries, obs has {b}")
            return t

        action = vec("action", None, torch.int64)
        agent_action = vec("agent_action", batch["action"], torch.int64)
        extra = vec("extra", np.zeros(b, bool), torch.bool)
        ret = vec("n_step_return", None, torch.float32)
        disc = vec("bootstrap_discount", None, torch.float32)
        weights = vec("weights", np.ones(b, np.float32), torch.float32)
        for name, a in (("action", action), ("agent_action", agent_action)):
            if b and (int(a.min()) < 0 or int(a.max()) >= self.num_actions):
                raise ValueError(
                    f"batch[{name!r}] outside [0, {self.num_actions}): {int(a.min())}.."
                    f"{int(a.max())}; is num_actions |A|+1 when the extra action is on?"
                )

        with torch.no_grad():
            q_next_target = self._forward(self.target, next_obs)
            q_next_online = self._forward(self.online, next_obs) if cfg.double_q else None
            y = n_step_double_q_target(
                ret, disc, q_next_online, q_next_target, double_q=cfg.double_q,
                value_rescaling=cfg.value_rescaling, eps=cfg.value_rescaling_eps,
            )
        q = self._forward(self.online, obs)
        q_env = q.gather(1, action[:, None]).squeeze(1)
        q_agent = q.gather(1, agent_action[:, None]).squeeze(1)
        delta = q_env - y
        delta_plus = torch.where(extra, q_agent - y, torch.zeros_like(y))
        loss = (0.5 * weights * (delta.square() + delta_plus.square())).mean()
        update_number = self.num_updates + 1
        loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise NonFiniteLossError(
                f"non-finite loss ({loss_value}) at update {update_number}; the update was "
                "skipped and parameters are unchanged. Check rewards/observations for NaN/inf, "
                "lower lr, or keep value_rescaling on"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        if not bool(torch.isfinite(grad_norm)):
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"non-finite gradient norm at update {update_number} (loss {loss_value}); the "
                "update was skipped and parameters are unchanged. Lower lr or check inputs"
            )
        self.optimizer.step()
        self.num_updates = update_number
        if self.num_updates % cfg.target_update_period_updates == 0:
            self.sync_target()
        with torch.no_grad():
            prio = torch.maximum(delta.abs(), delta_plus.abs())
        self.last_priorities = prio.detach().float().cpu().numpy()
        return {
            "loss": loss_value,
            "q_mean": float(q_env.detach().mean()),
            "target_mean": float(y.mean()),
            "td_abs_mean": float(delta.detach().abs().mean()),
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
        out: dict[str, torch.Tensor] = {}
        for prefix, net in (("online", self.online), ("target", self.target)):
            for k, v in net.state_dict().items():
                out[f"{prefix}.{k}"] = v.detach().cpu().clone().contiguous()
        names = dict(zip(self._param_list(), self._opt_param_names, strict=True))
        for p, st in self.optimizer.state.items():
            for key, value in st.items():
                t = value if torch.is_tensor(value) else torch.tensor(float(value))
                out[f"optimizer.{names[p]}.{key}"] = t.detach().cpu().clone().contiguous()
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
            for key in ("obs_shape", "num_actions"):
                if key in meta and list(np.atleast_1d(meta[key])) != list(
                    np.atleast_1d(mine[key])
                ):
                    raise ValueError(
                        f"agent state was saved with {key}={meta[key]}, this agent has "
                        f"{mine[key]}; build the agent with the saved spaces"
                    )
        problems: list[str] = []
        for prefix, net in (("online", self.online), ("target", self.target)):
            for k, v in net.state_dict().items():
                key = f"{prefix}.{k}"
                if key not in tensors:
                    problems.append(f"missing {key}")
                elif tuple(tensors[key].shape) != tuple(v.shape):
                    problems.append(
                        f"{key}: saved {tuple(tensors[key].shape)} vs agent {tuple(v.shape)}"
                    )
        for key in ("num_updates", "frozen"):
            if key not in tensors:
                problems.append(f"missing {key}")
        all_names = [
            f"{m}.{n}" for m in MODULE_NAMES for n, _ in self.online[m].named_parameters()
        ]
        opt: dict[str, dict[str, torch.Tensor]] = {}
        known = set(self.online.state_dict())
        for key, value in tensors.items():
            if key.startswith(("online.", "target.")):
                if key.split(".", 1)[1] not in known:
                    problems.append(f"unexpected {key}")
            elif key.startswith("optimizer."):
                rest = key[len("optimizer."):]
                pname, _, field = rest.rpartition(".")
                if pname not in all_names:
                    problems.append(f"unexpected {key}")
                else:
                    opt.setdefault(pname, {})[field] = value
            elif key not in ("num_updates", "frozen"):
                problems.append(f"unexpected {key}")
        if problems:
            raise ValueError("agent state does not fit this agent: " + "; ".join(problems[:8]))
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
        sd = self.optimizer.state_dict()
        sd["state"] = {
            i: dict(opt[name]) for i, name in enumerate(self._opt_param_names) if name in opt
        }
        self.optimizer.load_state_dict(sd)
        self.num_updates = int(tensors["num_updates"].reshape(-1)[0])

    def _param_list(self) -> list[torch.Tensor]:
        return [p for g in self.optimizer.param_groups for p in g["params"]]
