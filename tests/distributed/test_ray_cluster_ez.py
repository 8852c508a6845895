"""EfficientZero self-play on a joined Ray cluster: ``rltransfer train-ez --backend ray
--num-actors 2 --ray-address HOST:PORT`` against a cluster started here with ``ray start
--head`` on the loopback address (``conftest.ray_cluster``), with one self-play actor killed
mid-run and restarted by the pool; the run still reaches its env-step budget, learns, and
writes ``final/``.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

pytest.importorskip("ray")

_JOINED_EZ_RUN = """
import json, sys
import ray
from rltransfer.distributed import ActorPool

joined = []
init = ray.init
def recording_init(*args, **kwargs):
    joined.append(kwargs.get("address"))
    return init(*args, **kwargs)
ray.init = recording_init

gather = ActorPool.gather
calls = {"n": 0}
def gather_after_kill(self):
    calls["n"] += 1
    if calls["n"] == 3:  # actor 1 dies while round 3 is in flight
        self.kill_actor(1)
    return gather(self)
ActorPool.gather = gather_after_kill

from rltransfer.cli import main
main(sys.argv[1:])
print(json.dumps({"joined": joined, "connected": ray.is_initialized()}))
"""


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.mark.slow
def test_ez_selfplay_on_a_joined_cluster_restarts_a_killed_actor(
    ray_cluster: str, fresh_driver: Callable[..., subprocess.CompletedProcess[str]],
    tmp_path: Path
) -> None:
    run = tmp_path / "ez"
    out = fresh_driver(
        _JOINED_EZ_RUN, "train-ez", "--env-id", "MinAtar/Breakout-v1", "--num-envs", "4",
        "--total-env-steps", "192", "--backend", "ray", "--num-actors", "2",
        "--ray-address", ray_cluster, "--actor-chunk-steps", "4",
        "--mcts.num-simulations", "3", "--batch-size", "8", "--updates-per-env-step", "0.1",
        "--learning-starts-env-steps", "48", "--replay-capacity-env-steps", "1000",
        "--checkpoint-every-env-steps", "96", "--eval-every-env-steps", "96",
        "--eval-episodes", "1", "--max-episode-frames", "200",
        "--selfplay-update-interval-updates", "2", "--run-dir", str(run), "--no-progress",
        "--no-tensorboard",
    )
    assert out.returncode == 0, out.stderr[-3000:]
    driver = json.loads(out.stdout.strip().splitlines()[-1])
    assert driver["joined"] == [ray_cluster]  # the cluster at --ray-address, not a local Ray
    assert driver["connected"] is False  # disconnected; the cluster itself keeps running
    restarts = _records(run, "actors")
    assert len(restarts) == 1 and restarts[0]["restarts"] == 1
    meta = json.loads((run / "final" / "meta.json").read_text())
    assert meta["env_steps"] == 192  # the dropped round is made up for
    # Updates at 0.1 per env step from 48 env steps on: (192 - 48) * 0.1 = 14.4 -> 14 or 15.
    assert 14 <= meta["num_updates"] <= 15
    assert [r["env_steps"] for r in _records(run, "eval")] == [96, 192]
    assert _records(run, "train")[-1]["num_updates"] > 0
