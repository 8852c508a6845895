"""rltransfer: pretrain reinforcement-learning agents and transfer what they learned.

The public API (loaded on first use, so ``import rltransfer`` stays cheap)::

    import rltransfer
    cfg = rltransfer.suite_config("MiniGrid-DoorKey-5x5-v0", task="goal", explore="bt")
    rltransfer.train(cfg, prior=rltransfer.load_policy("runs/pre"))   # any Policy as pi_p
    rltransfer.evaluate("runs/bt", episodes=20)                         # saved run or Policy
    rltransfer.run_recipe("bt-minigrid")                               # rltransfer run --list

Configs: :class:`TrainConfig` (R2D2 and Behavior Transfer), :class:`SACTrainConfig` (pixel
SAC), :class:`EZTrainConfig` (EfficientZero). See ``docs/architecture.md`` for the map of the
package.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "TrainConfig": "rltransfer.agents.r2d2.config",
    "suite_config": "rltransfer.agents.r2d2.suites",
    "SACTrainConfig": "rltransfer.agents.sac.config",
    "EZTrainConfig": "rltransfer.agents.efficientzero.config",
    "train": "rltransfer.agents.r2d2.train",
    "train_sac": "rltransfer.agents.sac.train",
    "train_efficientzero": "rltransfer.agents.efficientzero.train",
    "evaluate": "rltransfer.api",
    "load_policy": "rltransfer.api",
    "Policy": "rltransfer.core.policy",
    "CallablePolicy": "rltransfer.core.policy",
    "RECIPES": "rltransfer.experiments",
    "build_recipe": "rltransfer.experiments",
    "run_recipe": "rltransfer.experiments",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rltransfer' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
