from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from rltransfer.agents.r2d2.config import TrainConfig
from rltransfer.core.config import ConfigError, from_dict, load_config, save_config, to_dict


@dataclass
class Inner:
    lr: float = 1e-3
    sizes: tuple[int, ...] = (32, 32)


@dataclass
class Outer:
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    steps: int = 10
    path: str | None = None
    inner: Inner = field(default_factory=Inner)


def test_unknown_key_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"'stpes' \(did you mean steps\?\)"):
        from_dict(Outer, {"stpes": 3})
    with pytest.raises(ConfigError, match=r"config\.inner: unknown key"):
        from_dict(Outer, {"inner": {"learning_rate": 3}})


def test_types_are_checked_and_converted() -> None:
    cfg = from_dict(Outer, {"steps": 5, "inner": {"lr": 1, "sizes": [1, 2]}, "path": None})
    assert cfg.inner.lr == 1.0 and isinstance(cfg.inner.lr, float)
    assert cfg.inner.sizes == (1, 2)
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Outer, {"steps": "5"})
    with pytest.raises(ConfigError, match="not one of"):
        from_dict(Outer, {"mode": "c"})
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Outer, {"steps": True})


def test_train_config_round_trips_through_json(tmp_path: Path) -> None:
    cfg = TrainConfig(env_id="MiniGrid-Empty-5x5-v0", freeze=("torso",), prior="p")
    save_config(cfg, tmp_path / "config.json")
    assert load_config(TrainConfig, tmp_path / "config.json") == cfg
    assert to_dict(cfg)["agent"]["gamma"] == cfg.agent.gamma
