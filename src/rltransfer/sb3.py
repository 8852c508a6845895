"""A Stable-Baselines3 model as a :class:`~rltransfer.core.policy.Policy` (e.g. BT's pi_p).

Behavior Transfer treats pi_p as a black box (Campos et al. 2021, Sec. 3), so a policy trained
with another library can drive the flights and resolve ``a+``. :class:`SB3Policy` wraps a
model **the user loaded** (``PPO.load(path)`` unpickles: only load files you trust);
rltransfer's own loaders never unpickle anything, and this module does not import
``stable_baselines3`` (optional extra ``rltransfer[sb3]``): any object with SB3's
``predict`` / ``action_space`` / ``observation_space`` works.

Observation layout: rltransfer hands a policy stacked ``uint8[B, C*S, H, W]`` observations
(``S`` frames of ``C`` channels, oldest first; ``docs/architecture.md``). The default
``obs_transform`` (:func:`default_obs_transform`) passes them on unchanged when the model's
observation space has exactly that shape (a model trained on a gymnasium env that gives our
observation, e.g. :func:`rltransfer.envs.minigrid.minigrid_env_fn`, or an SB3 CNN policy,
whose stored space is channels-first), and flattens them when the model's space is flat with
the same number of entries. Anything else (channels-last stacking by ``VecFrameStack``,
resizing, ``VecNormalize`` statistics) needs a user ``obs_transform``.

Usage::

    model = PPO.load("ppo_minigrid.zip")            # the user's choice to unpickle
    train(cfg, prior=SB3Policy(model))             # cfg.explore == "bt"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rltransfer.core.policy import SpaceMismatchError, checked_actions

ObsTransform = Callable[[np.ndarray], np.ndarray]
"""``uint8[B, C*S, H, W] -> the model's observation batch [B, *model.observation_space.shape]``."""


def default_obs_transform(observation_space: Any) -> tuple[ObsTransform, tuple[int, ...] | None]:
    """The default observation mapping for a model's (Box) observation space.

    Args:
        observation_space: the model's ``observation_space`` (``shape`` and ``dtype``).

    Returns:
        ``(transform, obs_shape)``: for a 3-D space, the identity (cast to the space's dtype)
        and ``obs_shape = space.shape`` (checked against the task by
        :func:`rltransfer.methods.behavior_transfer.validate_prior`); for a 1-D space, a flatten to
        ``[B, prod]`` and ``obs_shape = None`` (the size is checked on each call).

    Raises:
        SpaceMismatchError: the space is not 1-D or 3-D (pass ``obs_transform``), or, at call
            time, an observation does not fit it (the message names both shapes).
    """
    shape = getattr(observation_space, "shape", None)
    if shape is None or len(shape) not in (1, 3):
        raise SpaceMismatchError(
            f"the SB3 model's observation space {observation_space} is neither an image "
            "[C*S, H, W] nor flat; pass obs_transform= mapping uint8[B, C*S, H, W] to it"
        )
    space_shape = tuple(int(d) for d in shape)
    dtype = np.dtype(getattr(observation_space, "dtype", np.float32))

    def transform(obs: np.ndarray) -> np.ndarray:
        if len(space_shape) == 3:
            if tuple(obs.shape[1:]) != space_shape:
                raise SpaceMismatchError(
                    f"the SB3 model expects observations of shape {space_shape} but the task "
                    f"gives {tuple(obs.shape[1:])} (stacked [C*S, H, W]); pass obs_transform="
                )
            return obs.astype(dtype, copy=False)
        flat = obs.reshape(obs.shape[0], -1)
        if flat.shape[1] != space_shape[0]:
            raise SpaceMismatchError(
                f"the SB3 model expects flat observations of {space_shape[0]} entries but the "
                f"task gives {tuple(obs.shape[1:])} = {flat.shape[1]}; pass obs_transform="
            )
        return flat.astype(dtype, copy=False)

    return transform, (space_shape if len(space_shape) == 3 else None)


class SB3Policy:
    """A Stable-Baselines3 model (PPO, A2C, DQN, sb3-contrib's RecurrentPPO, ...) as a Policy.

    Args:
        model: a loaded model: ``model.predict(obs, state, episode_start, deterministic) ->
            (actions, state)``, ``model.action_space`` (``Discrete``) and
            ``model.observation_space``.
        obs_transform: maps our stacked ``uint8[B, C*S, H, W]`` to the model's observation
            batch; ``None``: :func:`default_obs_transform` of the model's space.
        deterministic: ``predict``'s ``deterministic`` (the mode of the action distribution,
            or a DQN's argmax) or sampling (``False``).
        obs_shape: the stacked observation shape ``(C*S, H, W)`` this policy acts on, checked
            against the task; ``None``: derived by the default transform where it can be
            (3-D spaces), else unchecked.

    Attributes:
        num_actions: ``model.action_space.n``.
        obs_shape: see above (absent when unknown).

    Raises:
        SpaceMismatchError: the action space is not discrete, or the default transform does
            not fit the model's observation space.
    """

    def __init__(
        self,
        model: Any,
        obs_transform: ObsTransform | None = None,
        deterministic: bool = True,
        obs_shape: tuple[int, ...] | None = None,
    ) -> None:
        n = getattr(getattr(model, "action_space", None), "n", None)
        if n is None:
            raise SpaceMismatchError(
                f"the SB3 model acts in {getattr(model, 'action_space', None)}; Behavior "
                "Transfer needs a discrete action set (gymnasium.spaces.Discrete)"
            )
        self.model = model
        self.num_actions = int(n)
        self.deterministic = bool(deterministic)
        derived: tuple[int, ...] | None = None
        if obs_transform is None:
            obs_transform, derived = default_obs_transform(model.observation_space)
        self.obs_transform = obs_transform
        shape = obs_shape if obs_shape is not None else derived
        if shape is not None:
            self.obs_shape = tuple(int(d) for d in shape)

    def reset(self, num_envs: int) -> None:
        """SB3's initial state is ``None`` (a recurrent model starts from zeros)."""
        return None

    def act(self, obs: np.ndarray, state: Any, first: np.ndarray) -> tuple[np.ndarray, Any]:
        """``model.predict`` on the transformed observations.

        Args:
            obs: ``uint8[B, C*S, H, W]``.
            state: ``None`` or the model's recurrent state from the previous call.
            first: ``bool[B]``, passed as ``episode_start`` (a recurrent model resets there).

        Returns:
            ``(int64[B] actions, the model's next state)``.

        Raises:
            SpaceMismatchError: from the observation transform.
            ValueError: the model returns a wrong number of actions or out-of-range ones.
        """
        x = self.obs_transform(np.asarray(obs))
        actions, next_state = self.model.predict(
            x, state=state, episode_start=np.asarray(first, dtype=bool),
            deterministic=self.deterministic,
        )
        return checked_actions(actions, np.asarray(obs).shape[0], self.num_actions,
                               "the SB3 model"), next_state

    def observe(self, actions: np.ndarray, rewards_extrinsic: np.ndarray,
                rewards_intrinsic: np.ndarray, state: Any) -> Any:
        """SB3 policies take no previous action or reward inputs: returns ``state``."""
        return state
