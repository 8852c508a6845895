"""Offline datasets: validation, the rltransfer format, Minari round trips (local only), and
datasets made from an EfficientZero replay / run."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rltransfer.core.checkpoint import CheckpointError, save_checkpoint
from rltransfer.envs.shared_actions import local_action_space, minatar_action_space
from rltransfer.methods.xtra.datasets import dataset_from_efficientzero_run
from rltransfer.replay.game_segment import GameSegmentReplay
from rltransfer.replay.offline import (
    Episode,
    OfflineDataset,
    OfflineDatasetError,
    dataset_from_game_segments,
    load_minari,
    save_minari,
)

BREAKOUT = minatar_action_space("MinAtar/Breakout-v1")
FRAME = (4, 10, 10)


def _episode(length: int, seed: int, *, terminated: bool = True, search: bool = True) -> Episode:
    rng = np.random.default_rng(seed)
    stats: tuple[Any, ...] = (None, None, None)
    if search:
        pol = rng.random((length, 3)).astype(np.float32)
        stats = (rng.normal(size=length).astype(np.float32), pol / pol.sum(1, keepdims=True),
                 np.arange(length) > 0)
    return Episode(rng.integers(0, 2, (length + 1, *FRAME), dtype=np.uint8),
                   rng.integers(0, 3, length), rng.normal(size=length).astype(np.float32),
                   terminated, not terminated, *stats)


def _dataset(search: bool = True) -> OfflineDataset:
    eps = [_episode(5, 1, search=search), _episode(3, 2, terminated=False, search=search)]
    return OfflineDataset.from_episodes("MinAtar/Breakout-v1", BREAKOUT, eps, frame_stack=4,
                                        info={"source": "test"})


def _assert_same(a: OfflineDataset, b: OfflineDataset) -> None:
    assert (a.env_id, a.action_space, a.frame_stack, a.info) == (
        b.env_id, b.action_space, b.frame_stack, b.info)
    for name in ("frames", "actions", "rewards", "terminations", "truncations",
                 "episode_lengths", "root_values", "root_policies", "search_mask"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), name


def test_layout_and_episode_views() -> None:
    data = _dataset()
    assert (data.num_episodes, data.num_steps, data.obs_shape) == (2, 8, FRAME)
    assert data.frames.shape == (10, *FRAME)
    ep = data.episode(1)
    assert (len(ep.actions), ep.frames.shape[0], ep.terminated, ep.truncated) == (
        3, 4, False, True)
    assert data.terminations.tolist() == [False] * 4 + [True] + [False] * 3
    assert data.meta()["action_space"] == BREAKOUT.to_json()
    with pytest.raises(IndexError):
        data.episode(2)


def test_malformed_datasets_are_rejected() -> None:
    data = _dataset()
    inside = data.terminations.copy()
    inside[1] = True
    with pytest.raises(OfflineDatasetError, match="only an episode's last step"):
        dataclasses.replace(data, terminations=inside)
    with pytest.raises(OfflineDatasetError, match=r"local ids in \[0, 3\)"):
        dataclasses.replace(data, actions=np.full(8, 3))
    with pytest.raises(OfflineDatasetError, match="together"):
        dataclasses.replace(data, search_mask=None)
    with pytest.raises(OfflineDatasetError, match="L \\+ 1 per episode"):
        dataclasses.replace(data, frames=data.frames[:-1])
    with pytest.raises(OfflineDatasetError, match="some episodes have search"):
        OfflineDataset.from_episodes("x", BREAKOUT, [_episode(2, 0), _episode(2, 0, search=False)])


@pytest.mark.parametrize("search", [True, False])
def test_rltransfer_format_round_trip(tmp_path: Path, search: bool) -> None:
    data = _dataset(search)
    path = data.save(tmp_path / "breakout")
    meta = json.loads((path / "meta.json").read_text())
    assert (meta["kind"], meta["env_id"], meta["obs_shape"]) == (
        "offline-dataset", "MinAtar/Breakout-v1", list(FRAME))
    _assert_same(OfflineDataset.load(path), data)
    save_checkpoint(tmp_path / "other", {"x": np.zeros(1)}, {"kind": "model"})
    with pytest.raises(OfflineDatasetError, match="not an offline dataset"):
        OfflineDataset.load(tmp_path / "other")
    with pytest.raises(CheckpointError):
        OfflineDataset.load(tmp_path / "missing")


def _no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    import minari.storage.hosting as hosting

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download")

    monkeypatch.setattr(hosting, "download_dataset", refuse)


def test_minari_round_trip_in_a_temporary_root(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("minari")
    pytest.importorskip("h5py")
    _no_downloads(monkeypatch)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    data = _dataset()
    path = save_minari(data, "rltransfer/breakout-ez-v0", description="test")
    assert path == tmp_path / "minari" / "rltransfer" / "breakout-ez-v0"
    _assert_same(load_minari("rltransfer/breakout-ez-v0"), data)
    with pytest.raises(OfflineDatasetError, match="already exists"):
        save_minari(data, "rltransfer/breakout-ez-v0")
    with pytest.raises(OfflineDatasetError, match="never downloads"):
        load_minari("rltransfer/absent-v0")
    # root= overrides the environment variable for one call
    other = tmp_path / "elsewhere"
    save_minari(_dataset(search=False), "plain-v1", root=other)
    _assert_same(load_minari("plain-v1", root=other), _dataset(search=False))
    assert not (tmp_path / "minari" / "plain-v1").exists()


def test_a_foreign_minari_dataset_is_read(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    minari = pytest.importorskip("minari")
    pytest.importorskip("h5py")
    from gymnasium import spaces
    from minari.data_collector import EpisodeBuffer

    _no_downloads(monkeypatch)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    obs = np.arange(4 * 6 * 6, dtype=np.uint8).reshape(4, 6, 6)  # [H, W] frames
    buf = EpisodeBuffer(observations=obs, actions=np.array([0, 2, 1]),
                        rewards=np.array([1.0, 0.0, 2.0]),
                        terminations=np.array([False, False, True]),
                        truncations=np.array([False, False, False]))
    minari.create_dataset_from_buffers(
        "foreign-v0", [buf], observation_space=spaces.Box(0, 255, (6, 6), np.uint8),
        action_space=spaces.Discrete(3), jpeg_encoding=False)
    data = load_minari("foreign-v0")
    assert (data.env_id, data.action_space, data.obs_shape) == (
        "foreign-v0", local_action_space(3), (1, 6, 6))
    assert np.array_equal(data.frames[:, 0], obs) and not data.has_search
    named = load_minari("foreign-v0", env_id="MinAtar/Breakout-v1")
    assert named.action_space == BREAKOUT


# ---------------------------------------------------------------------- from replays
def _frame(step: int, env: int) -> np.ndarray:
    return np.full(FRAME, (step * 7 + env * 3) % 250 + 1, dtype=np.uint8)


def _drive(replay: GameSegmentReplay, ends: list[dict[int, str]], num_steps: int,
           warmup_steps: int) -> list[list[dict]]:
    """NEXT_STEP autoreset streams; returns, per env, the episodes as played (dicts with
    start, end, final step, ``terminated``)."""
    b, a = replay.num_envs, replay.num_actions
    played: list[list[dict]] = [[] for _ in range(b)]
    start = [0] * b
    autoreset = [False] * b
    for t in range(num_steps):
        term, trunc = np.zeros(b, bool), np.zeros(b, bool)
        for i in range(b):
            if autoreset[i]:
                autoreset[i], start[i] = False, t + 1
                continue
            kind = ends[i].get(t)
            if kind is not None:
                term[i], trunc[i] = kind == "term", kind == "trunc"
                played[i].append({"start": start[i], "end": t, "terminated": kind == "term"})
                autoreset[i] = True
        if t < warmup_steps:
            values, policies = np.zeros(b), np.full((b, a), 1.0 / a, dtype=np.float32)
        else:
            values = np.array([0.5 + t for _ in range(b)])
            policies = np.tile(np.array([0.2, 0.3, 0.5]), (b, 1))
        replay.add(np.stack([_frame(t, i) for i in range(b)]), np.full(b, t % a),
                   np.array([t * 0.1 + i for i in range(b)]), term, trunc, values, policies)
    return played


def test_game_segments_give_the_complete_episodes() -> None:
    replay = GameSegmentReplay(2, 30, FRAME, 3, frame_stack=2, unroll_steps=2, td_steps=2)
    ends = [{5: "term", 12: "term", 30: "trunc", 38: "term"}, {8: "trunc", 20: "term"}]
    played = _drive(replay, ends, 40, warmup_steps=7)
    data = dataset_from_game_segments(replay.state_tensors(), env_id="MinAtar/Breakout-v1",
                                      action_space=BREAKOUT, no_search_before_env_step=32)
    oldest = 40 - 30
    expected = [(i, ep) for i in range(2) for ep in played[i]
                if ep["start"] >= oldest and ep["end"] + 1 <= 39]
    # env 0: [0..5] cut by the ring, [7..12] cut, [14..30] kept, [32..38] kept;
    # env 1: [0..8] cut, [10..20] kept, [22..] still running.
    assert [(i, ep["start"], ep["end"]) for i, ep in expected] == [
        (0, 14, 30), (0, 32, 38), (1, 10, 20)]
    assert data.num_episodes == 3
    for k, (env, ep) in enumerate(expected):
        got = data.episode(k)
        steps = np.arange(ep["start"], ep["end"] + 1)
        assert np.array_equal(got.frames, np.stack([_frame(t, env)
                                                    for t in range(ep["start"], ep["end"] + 2)]))
        assert got.actions.tolist() == (steps % 3).tolist()
        assert got.rewards == pytest.approx(steps * 0.1 + env)
        assert (got.terminated, got.truncated) == (ep["terminated"], not ep["terminated"])
        assert got.root_values is not None and got.search_mask is not None
        assert got.root_values == pytest.approx(np.where(steps < 7, 0.0, steps + 0.5))
        assert got.search_mask.tolist() == (steps >= 16).tolist()  # 32 env steps, B = 2


def _write_run(run_dir: Path, replay: GameSegmentReplay, *, replay_saved: bool = True) -> None:
    tensors: dict[str, torch.Tensor | np.ndarray] = {
        f"replay/{k}": v for k, v in replay.state_tensors().items()}
    tensors["representation/w"] = np.zeros(2, np.float32)
    meta = {"architecture": {"kind": "efficientzero", "env_id": "MinAtar/Breakout-v1",
                             "num_actions": 3, "frame_stack": 2},
            "config": {"random_warmup_actions": True, "clip_rewards": False, "seed": 3,
                       "learning_starts_env_steps": 6, "num_envs": 2, "updates_per_env_step": 1.0},
            "env_steps": 80, "replay_saved": replay_saved}
    save_checkpoint(run_dir / "checkpoints" / "step_000000000080", tensors, meta)


def test_an_efficientzero_run_becomes_a_dataset(tmp_path: Path) -> None:
    replay = GameSegmentReplay(2, 30, FRAME, 3, frame_stack=2, unroll_steps=2, td_steps=2)
    _drive(replay, [{5: "term", 12: "term"}, {8: "trunc", 20: "term"}], 30, warmup_steps=4)
    _write_run(tmp_path / "run", replay)
    data = dataset_from_efficientzero_run(tmp_path / "run")
    assert (data.env_id, data.action_space, data.frame_stack) == (
        "MinAtar/Breakout-v1", BREAKOUT, 2)
    assert data.episode_lengths.tolist() == [6, 6, 9, 11]
    assert data.info["source"] == "efficientzero-run" and data.info["seed"] == 3
    # uniform acting until env step 6 + 2 (one vector step of slack) + ceil(1 / 1.0) = 9:
    # vector steps 0..4 of both envs
    assert data.info["no_search_before_env_step"] == 9
    assert data.search_mask is not None and int((~data.search_mask).sum()) == 5 + 5
    assert not data.search_mask[:5].any() and data.search_mask[5]
    _write_run(tmp_path / "noreplay", replay, replay_saved=False)
    with pytest.raises(OfflineDatasetError, match="checkpoint_replay=True"):
        dataset_from_efficientzero_run(tmp_path / "noreplay")
    with pytest.raises(CheckpointError):
        dataset_from_efficientzero_run(tmp_path / "nothing")


@pytest.mark.slow
def test_a_real_efficientzero_run_round_trips_through_minari(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny MinAtar Breakout run with its replay checkpointed becomes a dataset whose
    episodes match the run's frames, and survives the rltransfer and Minari formats."""
    pytest.importorskip("minatar")
    from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig
    from rltransfer.agents.efficientzero.train import train_efficientzero
    from rltransfer.experiments.efficientzero import ez_small

    base = ez_small(run_dir=str(tmp_path / "run"), total_env_steps=240)
    cfg = dataclasses.replace(
        base, num_envs=2, mcts=dataclasses.replace(base.mcts, num_simulations=3),
        batch_size=8, updates_per_env_step=0.1, learning_starts_env_steps=60,
        replay_capacity_env_steps=1_000, checkpoint_every_env_steps=80,
        eval_every_env_steps=240, eval_episodes=1, max_episode_frames=200, progress=False,
        tensorboard=False, reanalyse=ReanalyseConfig(reanalyse_fraction=0.5))
    train_efficientzero(cfg)
    data = dataset_from_efficientzero_run(tmp_path / "run")
    assert data.env_id == "MinAtar/Breakout-v1" and data.action_space == BREAKOUT
    assert data.num_episodes >= 1 and data.obs_shape == FRAME
    assert data.search_mask is not None and data.search_mask.any()
    assert not data.search_mask[:30].all()  # the first episode starts in the uniform warm-up
    # MinAtar frames are 0/1 and every Breakout frame shows the paddle (channel 0)
    assert data.frames.max() == 1 and data.frames[:, 0].any(axis=(1, 2)).all()
    _assert_same(OfflineDataset.load(data.save(tmp_path / "ds")), data)
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    if pytest.importorskip("minari") and pytest.importorskip("h5py"):
        save_minari(data, "rltransfer/breakout-tiny-v0")
        _assert_same(load_minari("rltransfer/breakout-tiny-v0"), data)
