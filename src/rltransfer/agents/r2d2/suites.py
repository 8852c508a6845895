"""Per-suite starting values of the R2D2 learner and loop (as rl-zoo keeps hyperparameters
per env): :data:`SUITE_DEFAULTS`, :func:`apply_suite_defaults` (the CLI) and
:func:`suite_config` (Python).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from rltransfer.agents.r2d2.config import TrainConfig
from rltransfer.core.config import ConfigError


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
        updates_per_env_step: replay ratio (gradient updates per env step).
        epsilon_schedule: acting epsilons (see :attr:`TrainConfig.epsilon_schedule`).
        source: where the values come from.
    """

    gamma: float
    n_step: int
    lr: float
    adam_eps: float
    target_update_period_updates: int
    learning_starts_env_steps: int
    updates_per_env_step: float
    epsilon_schedule: Literal["ape_x", "constant", "linear"]
    source: str


SUITE_AGENT_FIELDS: tuple[str, ...] = (
    "gamma", "n_step", "lr", "adam_eps", "target_update_period_updates")
""":class:`SuiteDefaults` fields that set :class:`~rltransfer.agents.r2d2.config.R2D2Config`
fields."""
SUITE_LOOP_FIELDS: tuple[str, ...] = (
    "learning_starts_env_steps", "updates_per_env_step", "epsilon_schedule")
""":class:`SuiteDefaults` fields that set :class:`TrainConfig` fields."""

R2D2_PAPER_DEFAULTS = SuiteDefaults(
    gamma=0.997, n_step=5, lr=1e-4, adam_eps=1e-3, target_update_period_updates=2_500,
    learning_starts_env_steps=2_000, updates_per_env_step=0.25, epsilon_schedule="ape_x",
    source="R2D2 (Kapturowski et al. 2019, Table 2) for the learner and the Ape-X epsilons; "
           "the field defaults of TrainConfig / R2D2Config",
)
"""Atari: R2D2's values, equal to the :class:`TrainConfig` / ``R2D2Config`` field defaults."""

MINIGRID_DEFAULTS = SuiteDefaults(
    gamma=0.9, n_step=5, lr=1e-3, adam_eps=1e-6, target_update_period_updates=250,
    learning_starts_env_steps=2_000, updates_per_env_step=0.25, epsilon_schedule="ape_x",
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
            configs' own checks, or a renamed field (``env_steps_per_update``, naming its
            replacement). TypeError: a name that is not a field.
    """
    renamed = [TrainConfig.RENAMED_FIELDS[k] for k in changes if k in TrainConfig.RENAMED_FIELDS]
    if renamed:
        raise ConfigError("suite_config: " + "; ".join(renamed))
    cfg = apply_suite_defaults(TrainConfig(), env_id)
    if agent:
        changes["agent"] = dataclasses.replace(cfg.agent, **agent)
    return dataclasses.replace(cfg, **changes)
