"""EfficientZero self-play on Ray: the worker (without Ray), a tiny run through
``rltransfer train-ez --backend ray --num-actors 2`` on MinAtar Breakout, and a killed actor
restarted mid-run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rltransfer.agents.efficientzero.actor import load_selfplay_tensors, selfplay_tensors
from rltransfer.agents.efficientzero.config import EZTrainConfig
from rltransfer.agents.efficientzero.train import EZTrainer
from rltransfer.core.config import to_dict
from rltransfer.distributed import ActorPool
from rltransfer.distributed.selfplay import SelfPlayWorker
from tests.helpers import metrics_records, tiny_ez_config

ray = pytest.importorskip("ray")


def _tiny(run_dir: Path) -> EZTrainConfig:
    return tiny_ez_config(run_dir, 192, num_envs=4, learning_starts_env_steps=48,
                          checkpoint_every_env_steps=96, eval_every_env_steps=96,
                          selfplay_update_interval_updates=2, backend="ray", num_actors=2,
                          actor_chunk_steps=4)


def test_selfplay_worker_without_ray(tmp_path: Path) -> None:
    cfg = _tiny(tmp_path)
    cfg = dataclasses.replace(cfg, mcts=dataclasses.replace(cfg.mcts, num_simulations=4))
    trainer = EZTrainer(dataclasses.replace(cfg, backend="local"))
    weights = selfplay_tensors(trainer.selfplay_network)
    assert {k.split("/")[0] for k in weights} == {
        "representation", "dynamics", "prediction", "projection"}
    worker = SelfPlayWorker(to_dict(cfg), 2, 1, env_seed=3, weights=weights)
    for name, v in worker.network.state_dict().items():  # synced by name, exactly
        comp, _, rest = name.partition(".")
        np.testing.assert_array_equal(v.numpy(), weights[f"{comp}/{rest}"])
    warm = worker.collect(3, env_steps=0, random_actions=True)
    a = trainer.num_actions
    assert warm["obs"].shape == (3, 2, *trainer.frame_shape)
    assert warm["actions"].shape == (3, 2) and warm["policy"].shape == (3, 2, a)
    np.testing.assert_allclose(warm["policy"], 1.0 / a)  # uniform targets, no search
    np.testing.assert_array_equal(warm["root_values"], 0.0)
    searched = worker.collect(2, env_steps=12)
    # Search targets: visit counts of 4 simulations over the root's actions, N(a) / 4.
    np.testing.assert_allclose(searched["policy"].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(searched["policy"] * 4, np.round(searched["policy"] * 4),
                               atol=1e-5)
    # A changed network reaches the worker by name.
    changed = {k: v + 1.0 if v.dtype.kind == "f" else v for k, v in weights.items()}
    load_selfplay_tensors(worker.network, changed)
    key = next(k for k in changed if k.startswith("prediction/"))
    comp, _, rest = key.partition("/")
    assert torch.equal(getattr(worker.network, comp).state_dict()[rest],
                       torch.from_numpy(changed[key]))
    with pytest.raises(ValueError, match="num_steps"):
        worker.collect(0, env_steps=0)
    worker.close()
    trainer.envs.close()


@pytest.mark.slow
def test_train_ez_on_two_ray_actors_from_the_cli(tmp_path: Path) -> None:
    from rltransfer.cli import main

    run = tmp_path / "ez"
    main(["train-ez", "--env-id", "MinAtar/Breakout-v1", "--num-envs", "4",
          "--total-env-steps", "192", "--backend", "ray", "--num-actors", "2",
          "--actor-chunk-steps", "4", "--mcts.num-simulations", "3", "--batch-size", "8",
          "--updates-per-env-step", "0.1", "--learning-starts-env-steps", "48",
          "--replay-capacity-env-steps", "1000", "--checkpoint-every-env-steps", "96",
          "--eval-every-env-steps", "96", "--eval-episodes", "1",
          "--max-episode-frames", "200", "--selfplay-update-interval-updates", "2",
          "--run-dir", str(run), "--no-progress", "--no-tensorboard"])
    meta = json.loads((run / "final" / "meta.json").read_text())
    assert meta["env_steps"] == 192
    # Updates at 0.1 per env step from 48 env steps on: (192 - 48) * 0.1 = 14.4 -> 14 or 15.
    assert 14 <= meta["num_updates"] <= 15
    assert len(metrics_records(run, "eval")) == 2  # at 96 and at the end
    assert not metrics_records(run, "actors")


@pytest.mark.slow
def test_killed_selfplay_actor_is_restarted(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    gather = ActorPool.gather
    calls = {"n": 0}

    def gather_after_kill(self: ActorPool) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            self.kill_actor(1)
        return gather(self)

    monkeypatch.setattr(ActorPool, "gather", gather_after_kill)
    trainer = EZTrainer(_tiny(tmp_path))
    result = trainer.run()
    restarts = metrics_records(tmp_path, "actors")
    assert len(restarts) == 1 and restarts[0]["restarts"] == 1
    assert result.env_steps == 192  # the dropped round is made up for
    assert (tmp_path / "final" / "meta.json").is_file()


def test_selfplay_worker_in_a_shared_action_space(tmp_path: Path) -> None:
    """Breakout (3 legal actions) in MinAtar's union of 6: the worker's network is union-wide
    and reads channel-padded frames, as the learner's; replay records stay in local ids."""
    cfg = dataclasses.replace(_tiny(tmp_path), action_space="minatar-union")
    trainer = EZTrainer(dataclasses.replace(cfg, backend="local"))
    worker = SelfPlayWorker(to_dict(cfg), 2, 0, env_seed=3,
                            weights=selfplay_tensors(trainer.selfplay_network))
    assert worker.network.num_actions == trainer.adapter.num_actions == 6
    for name, v in worker.network.state_dict().items():  # the learner's shapes, by name
        assert v.shape == trainer.selfplay_network.state_dict()[name].shape
    out = worker.collect(2, env_steps=12)
    assert out["policy"].shape == (2, 2, trainer.num_actions)
    assert out["actions"].max() < trainer.num_actions
    worker.close()
    trainer.envs.close()


@pytest.mark.slow
def test_train_ez_on_two_ray_actors_in_a_shared_action_space(tmp_path: Path) -> None:
    cfg = dataclasses.replace(_tiny(tmp_path), action_space="minatar-union")
    result = EZTrainer(cfg).run()
    assert result.env_steps == 192
    meta = json.loads((tmp_path / "final" / "meta.json").read_text())
    assert meta["num_updates"] >= 14
    assert not metrics_records(tmp_path, "actors")
