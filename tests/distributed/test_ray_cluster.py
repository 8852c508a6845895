"""Joining an existing Ray cluster: the address comes from --ray-address, else RAY_ADDRESS,
else a local instance; an unreachable address is one UserError line; and a tiny R2D2 run
against a cluster started here with ``ray start --head`` on the loopback address counts the
same env steps and updates as a local run (the cluster and the fresh driver process:
``conftest.py``).
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rltransfer.agents.r2d2.train import Trainer
from rltransfer.distributed import RayClusterError, init_ray, resolve_ray_address
from rltransfer.errors import UserError

from .test_ray_backend import TINY, _records

ray = pytest.importorskip("ray")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (no Ray behind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        yield int(s.getsockname()[1])


@pytest.fixture
def fake_ray_init(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record ``ray.init``'s arguments instead of starting or joining Ray."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    return calls


def test_ray_address_env_is_used_when_the_flag_is_unset(
    monkeypatch: pytest.MonkeyPatch, listening_port: int, fake_ray_init: list[dict[str, Any]]
) -> None:
    address = f"127.0.0.1:{listening_port}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    assert init_ray(None) is True
    assert fake_ray_init[-1]["address"] == address
    assert "num_cpus" not in fake_ray_init[-1]  # a joined cluster keeps its own resources
    # The flag wins over the variable.
    flag = f"localhost:{listening_port}"
    assert init_ray(flag) is True
    assert fake_ray_init[-1]["address"] == flag
    # Neither: a local instance, as before.
    monkeypatch.delenv("RAY_ADDRESS")
    assert init_ray(None, num_cpus=3) is True
    assert fake_ray_init[-1]["address"] == "local" and fake_ray_init[-1]["num_cpus"] == 3
    assert resolve_ray_address("local") is None
    monkeypatch.setenv("RAY_ADDRESS", "")
    assert resolve_ray_address(None) is None


def test_unreachable_address_is_one_user_error_line(
    monkeypatch: pytest.MonkeyPatch, fake_ray_init: list[dict[str, Any]]
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    with pytest.raises(RayClusterError) as info:
        init_ray(address)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in message and address in message and "ray start --head" in message
    with pytest.raises(RayClusterError, match="HOST:PORT"):
        init_ray("no-port-here")
    assert fake_ray_init == []  # ray.init was never reached


def test_cli_reports_an_unreachable_cluster_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rltransfer.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    address = f"127.0.0.1:{_free_port()}"
    with pytest.raises(SystemExit) as info:
        main(["train", "--env-id", "MiniGrid-Empty-5x5-v0", "--num-envs", "2",
              "--total-env-steps", "16", "--backend", "ray", "--num-actors", "2",
              "--ray-address", address, "--run-dir", str(tmp_path / "run"),
              "--no-progress", "--no-tensorboard"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and address in err[0] and "ray start --head" in err[0]


_JOINED_RUN = """
import dataclasses, json, sys
import ray
from rltransfer.agents.r2d2.train import Trainer
from tests.distributed.test_ray_backend import TINY
trainer = Trainer(dataclasses.replace(TINY, run_dir=sys.argv[1], ray_address=sys.argv[2]))
result = trainer.run()
print(json.dumps({"env_steps": result.env_steps, "num_updates": result.num_updates,
                  "num_added": trainer.replay.num_added, "connected": ray.is_initialized()}))
"""


@pytest.mark.slow
def test_r2d2_run_on_a_joined_cluster_counts_like_a_local_run(
    ray_cluster: str, fresh_driver: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path
) -> None:
    # Driven from a fresh process, as a user's would be (see conftest.fresh_driver).
    out = fresh_driver(_JOINED_RUN, str(tmp_path / "cluster"), ray_cluster)
    assert out.returncode == 0, out.stderr[-3000:]
    joined = json.loads(out.stdout.strip().splitlines()[-1])
    assert joined["connected"] is False  # disconnected; the cluster itself keeps running
    local = Trainer(dataclasses.replace(TINY, run_dir=str(tmp_path / "local"),
                                        backend="local")).run()
    # 384 env steps; one update per 8 env steps once learning starts at 64: (384-64)/8 = 40.
    assert joined["env_steps"] == local.env_steps == 384
    assert joined["num_updates"] == local.num_updates == 40
    assert joined["num_added"] == 384 // 4
    assert (len(_records(tmp_path / "cluster", "eval"))
            == len(_records(tmp_path / "local", "eval")) == 2)
    assert not _records(tmp_path / "cluster", "actors")  # no restarts
    assert (tmp_path / "cluster" / "final" / "meta.json").is_file()
