"""The Ray backend end to end: actors feed the learner, a killed actor is restarted.

One Ray instance per module (start-up takes ~10 s); every test uses 2 actors on a tiny
MiniGrid config.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rltransfer.agents.r2d2.actor import StepBatch, acting_tensors
from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.train import Trainer
from rltransfer.core.checkpoint import latest_checkpoint
from rltransfer.core.config import ConfigError, to_dict
from rltransfer.distributed import ActorPool, actor_env_slice, init_ray
from rltransfer.distributed.worker import CollectorWorker

ray = pytest.importorskip("ray")

TINY = TrainConfig(
    env_id="MiniGrid-Empty-5x5-v0", num_envs=4, backend="ray", num_actors=2,
    actor_chunk_steps=8, actor_sync_period_updates=4, total_env_steps=384,
    learning_starts_env_steps=64, updates_per_env_step=0.125, replay_capacity_env_steps=2_000,
    eval_every_env_steps=192, eval_episodes=2, checkpoint_every_env_steps=192,
    tensorboard=False, progress=False,
    agent=R2D2Config(feature_dim=16, hidden=16, batch_size=16, n_step=2,
                     target_update_period_updates=20),
)


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    started = init_ray(num_cpus=2)
    yield
    if started:
        ray.shutdown()


def test_actor_env_slices_and_validation() -> None:
    assert actor_env_slice(8, 2, 1) == slice(4, 8)
    with pytest.raises(ValueError, match="multiple of num_actors"):
        actor_env_slice(6, 4, 0)
    with pytest.raises(ConfigError, match="num_actors"):
        Trainer(dataclasses.replace(TINY, num_envs=3, run_dir="/tmp/unused-ray-run"))


def test_worker_epsilons_and_chunk_without_ray() -> None:
    cfg = dataclasses.replace(TINY, num_envs=8)
    worker = CollectorWorker(to_dict(cfg), 2, 1, env_seed=5, weights=None)
    # Ape-X over all 8 envs of both actors: actor 1 holds global envs 4..7.
    epsilon = np.asarray(worker.collector.explorer.epsilon,  # type: ignore[attr-defined]
                         dtype=np.float64)
    np.testing.assert_allclose(epsilon, 0.4 ** (1 + 7 * np.arange(4, 8) / 7))
    out = worker.collect(5, env_steps=0)
    assert out["obs"].shape == (5, 4, 3, 5, 5) and out["env_actions"].shape == (5, 4)
    with pytest.raises(ValueError, match="num_steps"):
        worker.collect(0, env_steps=0)
    worker.close()


@pytest.mark.slow
def test_two_actors_train_end_to_end(ray_session: None, tmp_path: Path) -> None:
    cfg = dataclasses.replace(TINY, run_dir=str(tmp_path), intrinsic="rnd", rnd_feature_dim=8,
                              rnd_hidden=8, intrinsic_warmup_env_steps=32)
    trainer = Trainer(cfg)
    result = trainer.run()
    # 32 warm-up steps in the learner, then 11 rounds of 8 steps x 4 envs, nothing dropped.
    assert result.env_steps == 384
    assert trainer.replay.num_added == (384 - 32) // 4
    # The learner's RND observation statistics saw the warm-up and every actor frame.
    assert float(trainer.intrinsic.obs_rms.count) >= 384  # type: ignore[union-attr]
    # Replay ratio: one update per 8 env steps once learning starts at 64.
    assert (384 - 64) // 8 - 1 <= result.num_updates <= (384 - 64) // 8 + 1
    assert len(_records(tmp_path, "eval")) == 2  # at 192 and at the end
    assert latest_checkpoint(tmp_path / "checkpoints") is not None
    assert (tmp_path / "final" / "meta.json").is_file()
    assert not _records(tmp_path, "actors")  # no restarts


@pytest.mark.slow
def test_killed_actor_is_restarted_and_run_finishes(
    ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gather = ActorPool.gather
    calls = {"n": 0}

    def gather_after_kill(self: ActorPool) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            self.kill_actor(0)
        return gather(self)

    monkeypatch.setattr(ActorPool, "gather", gather_after_kill)
    cfg = dataclasses.replace(TINY, run_dir=str(tmp_path))
    result = Trainer(cfg).run()
    restarts = _records(tmp_path, "actors")
    assert len(restarts) == 1 and restarts[0]["restarts"] == 1
    # The killed round is dropped and made up for: the run still reaches its budget.
    assert result.env_steps == 384
    assert (tmp_path / "final" / "meta.json").is_file()


@pytest.mark.slow
def test_recurrent_ngu_family_rounds_fit_the_learner_replay(tmp_path: Path) -> None:
    """Two workers (in this process) over 4 envs with NGU's family of 2 policies: their
    chunks, joined in global env order, are what the learner's sequence replay takes, and
    env i acts as policy j = i mod 2 whichever actor holds it."""
    cfg = dataclasses.replace(
        TINY, backend="local", intrinsic="ngu", intrinsic_scale=0.3, run_dir=str(tmp_path),
        agent=R2D2Config(core="lstm", feature_dim=16, hidden=16, lstm_hidden=16,
                         batch_size=4, n_step=2, burn_in=2, sequence_length=8,
                         sequence_overlap=4, num_policies=2),
    )
    trainer = Trainer(cfg)
    weights = acting_tensors(trainer.agent, trainer.intrinsic)
    workers = [CollectorWorker(to_dict(cfg), 2, k, env_seed=10 * k, weights=weights)
               for k in range(2)]
    chunks = [StepBatch.from_arrays(w.collect(12, env_steps=0)) for w in workers]
    joined = StepBatch.concat_envs(chunks, axis=1)
    np.testing.assert_array_equal(joined.policy_index[0], [0, 1, 0, 1])
    # beta_0 = 0 (exploitative), beta_1 = 0.3: r = r_e + beta_j r_i per env.
    np.testing.assert_allclose(joined.reward[:, 0], joined.extrinsic_reward[:, 0])
    np.testing.assert_allclose(
        joined.reward[:, 1], joined.extrinsic_reward[:, 1] + 0.3 * joined.intrinsic_reward[:, 1],
        rtol=1e-5)
    assert joined.core_state.shape == (12, 4, trainer.agent.state_dim)
    for t in range(12):
        joined.at(t).add_to(trainer.replay)
    assert trainer.replay.can_sample()
    batch = trainer.replay.sample(4, np.random.default_rng(0))
    trainer.agent.update(batch)
    for w in workers:
        w.close()
    trainer.envs.close()
