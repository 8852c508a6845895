"""Replay checkpoints written before the :class:`~rltransfer.replay.ring.SlotRing` base.

``tests/replay/data/legacy_replays.npz`` holds, for each replay kind of :data:`KINDS`, the
``state_tensors()`` of a replay driven by :func:`drive` (seeded streams that wrap the ring,
end episodes both ways and restart the stream), and what that replay returned afterwards:
a sample with ``default_rng(3)``, then, after :func:`drive` adds ``3`` more steps, another
sample. It was written by the replays of commit e36aa18 (the last one before the base) with

    PYTHONPATH=<e36aa18 src> python -m tests.replay.legacy_fixture OUT.npz

(``<e36aa18 src>``: ``git archive e36aa18 src | tar -x -C DIR``, then ``DIR/src``).

Only this module's code and the replays' public API are used, so the same functions replay
the stream on the current code (``tests/replay/test_ring.py``).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from rltransfer.replay.game_segment import GameSegmentReplay
from rltransfer.replay.sequence import SequenceReplay
from rltransfer.replay.transition import TransitionReplay

KINDS = ("transition", "transition_uniform", "continuous", "sequence", "game")
FRAME = (1, 2, 2)


def build(kind: str) -> Any:
    """A small replay of ``kind`` (capacities small enough to wrap within :func:`drive`)."""
    if kind == "transition":
        return TransitionReplay(2, 12, FRAME, frame_stack=2, n_step=2)
    if kind == "transition_uniform":
        return TransitionReplay(1, 9, FRAME, frame_stack=1, n_step=3, prioritized=False)
    if kind == "continuous":
        return TransitionReplay(1, 10, FRAME, frame_stack=2, n_step=2, action_shape=(2,),
                                action_dtype=np.float32)
    if kind == "sequence":
        return SequenceReplay(2, 20, FRAME, 2, frame_stack=2, sequence_length=6, burn_in=2,
                              sequence_overlap=3, n_step=2, policy_gammas=[0.9, 0.99])
    if kind == "game":
        return GameSegmentReplay(2, 14, FRAME, 3, frame_stack=2, unroll_steps=2, td_steps=2)
    raise ValueError(kind)


def drive(replay: Any, kind: str, rng: np.random.Generator, steps: int,
          restart_at: int = -1) -> None:
    """Add ``steps`` seeded vector-env steps (episode ends ~1 in 8 steps, half of them
    truncations); ``begin_stream()`` after step ``restart_at``; priorities updated from
    samples every third step."""
    b = replay.num_envs
    for t in range(steps):
        obs = rng.integers(0, 256, (b, *FRAME), dtype=np.uint8)
        end = rng.random(b) < 0.125
        trunc = end & (rng.random(b) < 0.5)
        term = end & ~trunc
        reward = rng.standard_normal(b)
        if kind == "game":
            pol = rng.random((b, 3))
            replay.add(obs, rng.integers(0, 3, b), reward, term, trunc, rng.standard_normal(b),
                       pol / pol.sum(axis=1, keepdims=True))
        elif kind == "sequence":
            act = rng.integers(0, 4, b)
            replay.add(obs, act, act, rng.random(b) < 0.2, reward, term, trunc,
                       core_state=rng.standard_normal((b, 2)).astype(np.float32),
                       intrinsic_reward=rng.random(b), policy_index=rng.integers(0, 2, b))
        elif kind == "continuous":
            replay.add(obs, rng.standard_normal((b, 2)).astype(np.float32), None, None, reward,
                       term, trunc)
        else:
            act = rng.integers(0, 4, b)
            replay.add(obs, act, act + 1, rng.random(b) < 0.3, reward, term, trunc)
        if t == restart_at:
            replay.begin_stream()
        if t % 3 == 0 and replay.can_sample():
            idx = sample(replay, kind, rng, 4)["indices"]
            replay.update_priorities(idx, np.abs(rng.standard_normal(idx.shape[0])))


def sample(replay: Any, kind: str, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """One sample as a flat dict of arrays (EfficientZero: ids, weights and the segment)."""
    if kind != "game":
        return dict(replay.sample(n, rng))
    idx, w = replay.sample(n, rng, 0.7)
    seg = replay.segment(idx)
    out = {"indices": idx, "weights": w, "obs": replay.stacked_obs(seg.envs, seg.steps)}
    out.update({f"segment.{k}": np.asarray(v) for k, v in vars(seg).items()})
    return out


def record(kind: str) -> dict[str, np.ndarray]:
    """What the fixture stores for ``kind`` (keys ``state/..``, ``after_load/..``,
    ``after_add/..``)."""
    replay = build(kind)
    drive(replay, kind, np.random.default_rng(11), 40, restart_at=25)
    out = {f"state/{k}": np.asarray(v) for k, v in replay.state_tensors().items()}
    rng = np.random.default_rng(3)
    out.update({f"after_load/{k}": v for k, v in sample(replay, kind, rng, 5).items()})
    drive(replay, kind, np.random.default_rng(12), 3)
    out.update({f"after_add/{k}": v for k, v in sample(replay, kind, rng, 5).items()})
    return out


if __name__ == "__main__":
    arrays = {f"{kind}/{k}": v for kind in KINDS for k, v in record(kind).items()}
    np.savez_compressed(sys.argv[1], **arrays)  # type: ignore[arg-type]
    print(f"{len(arrays)} arrays -> {sys.argv[1]}")
