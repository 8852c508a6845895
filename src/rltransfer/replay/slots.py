"""What the three replays share: per-env slot streams with prioritized sampling.

:class:`~rltransfer.replay.transition.TransitionReplay`,
:class:`~rltransfer.replay.sequence.SequenceReplay` and
:class:`~rltransfer.replay.game_segment.GameSegmentReplay` all store each env's steps in a
ring of ``capacity_per_env`` slots (frames once), mark which slots start a sampleable item
(``eligible``, ``bool[B, capacity_per_env]``, flat id ``env * capacity_per_env + slot``),
and keep one :class:`~rltransfer.replay.sum_tree.SumTree` leaf per slot holding
``p^alpha`` (0 where not eligible). The functions here are the array-level pieces of that
machinery; :class:`~rltransfer.replay.ring.SlotRing`, the base class of the three, uses them
for its ring, and each replay keeps only what its items are.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rltransfer.replay.sum_tree import SumTree

__all__ = [
    "check_indices",
    "importance_weights",
    "set_eligible",
    "set_priorities",
    "stack_zero_mask",
    "validated_state",
]


def stack_zero_mask(first_back: np.ndarray) -> np.ndarray:
    """Which stacked frames (oldest first) precede the episode start.

    Args:
        first_back: ``bool[B, S-1]``, ``first_back[:, i]`` is the episode-start flag of the
            frame ``i`` steps before the newest one (``i = 0`` is the newest).

    Returns:
        ``bool[B, S]``, oldest first; true where the frame must be replaced by zeros: frame
        ``k`` steps back (``k >= 1``) is zeroed if any of the ``k`` newer frames starts an
        episode.
    """
    b, s1 = first_back.shape
    zero = np.zeros((b, s1 + 1), dtype=bool)
    if s1:
        zero[:, :s1] = np.logical_or.accumulate(first_back, axis=1)[:, ::-1]
    return zero


def check_indices(indices: np.ndarray, eligible: np.ndarray, what: str) -> np.ndarray:
    """Flat ids as ``int64[N]``, checked against ``eligible`` (``bool[B, capacity]``).

    Raises:
        ValueError: an id is out of ``[0, B * capacity)`` or not sampleable now (``what``
            names the items, e.g. ``"transitions"``).
    """
    flat = np.asarray(indices, dtype=np.int64).reshape(-1)
    if flat.size and (flat.min() < 0 or flat.max() >= eligible.size):
        raise ValueError(f"indices must be in [0, {eligible.size})")
    if not np.all(eligible.reshape(-1)[flat]):
        raise ValueError(f"some indices are not sampleable {what} (see eligible_indices)")
    return flat


def importance_weights(tree: SumTree, flat: np.ndarray, total: float, num_eligible: int,
                       exponent: float) -> np.ndarray:
    """Prioritized-replay importance weights of the sampled flat ids, normalised by the
    largest weight **in the sampled batch**.

    ``w_i = (N P(i))^-beta / max_{j in batch} (N P(j))^-beta`` with ``P(i) = tree[i] /
    total`` and ``N = num_eligible``. Schaul et al. (2016, Sec. 3.4 and Algorithm 1) divide
    by ``max_i w_i`` "so that they only scale the update downwards" without saying over
    what; some implementations (OpenAI baselines) take the max over the whole buffer, i.e.
    the weight of its smallest priority. This one follows the R2D2 line of public code,
    SEED RL's ``PrioritizedReplay.sample`` (google-research/seed_rl, common/utils.py:
    ``weights /= tf.reduce_max(weights)``), which normalises over the batch: the largest
    weight of every batch is exactly 1, so the loss scale does not depend on one stale
    low-priority item elsewhere in the buffer (docs/decisions.md).

    Args:
        tree: the replay's sum tree of ``p^alpha``.
        flat: ``int64[n]`` sampled flat ids (leaves > 0).
        total: ``tree.total`` at sampling time.
        num_eligible: ``N``, the number of sampleable items.
        exponent: ``beta``.

    Returns:
        ``float32[n]`` in ``(0, 1]``, with maximum 1.
    """
    probs = tree.get(flat) / total
    w = (num_eligible * probs) ** (-float(exponent))
    return (w / w.max()).astype(np.float32)


def set_eligible(eligible: np.ndarray, tree: SumTree, flat: np.ndarray, flags: np.ndarray,
                 fresh_priority: float) -> int:
    """Set the eligibility of unique flat ids, keeping the tree in sync: newly eligible ids
    get ``fresh_priority`` (already raised to alpha), ineligible ones 0.

    Returns:
        The change of the number of eligible ids.
    """
    elig = eligible.reshape(-1)
    changed = elig[flat] != flags
    if not changed.any():
        return 0
    ids, new = flat[changed], flags[changed]
    if ids.min() < 0:  # numpy would wrap them; the tree kernel must not see them
        raise ValueError(f"flat ids must be >= 0, got {ids.min()}")
    elig[ids] = new
    # ids index ``eligible`` (in range) and the values are fresh_priority or 0: no re-check
    tree.set_trusted(ids, np.where(new, float(fresh_priority), 0.0))
    return int(new.sum()) - int((~new).sum())


def set_priorities(tree: SumTree, eligible: np.ndarray, indices: np.ndarray,
                   priorities: np.ndarray, *, min_priority: float, exponent: float,
                   max_priority: float, prioritized: bool = True) -> float:
    """Store ``max(p_i, min_priority)^alpha`` for sampled flat ids that are still eligible
    (ids overwritten since sampling are skipped); a no-op when not ``prioritized`` (after
    validation).

    Args:
        indices: ``int[N]`` flat ids; priorities: ``float[N]`` ``p_i``, finite and >= 0.

    Returns:
        The new running maximum priority (``max_priority`` if nothing was set).

    Raises:
        ValueError: mismatched shapes, out-of-range ids, negative or non-finite priorities.
    """
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    prio = np.asarray(priorities, dtype=np.float64).reshape(-1)
    if idx.shape != prio.shape:
        raise ValueError(f"{idx.shape[0]} indices but {prio.shape[0]} priorities")
    if idx.size and (idx.min() < 0 or idx.max() >= eligible.size):
        raise ValueError(f"indices must be in [0, {eligible.size})")
    if not np.all(np.isfinite(prio)) or (prio.size and prio.min() < 0):
        raise ValueError("priorities must be finite and >= 0 (got NaN/inf or negative)")
    if not prioritized or idx.size == 0:
        return max_priority
    prio = np.maximum(prio, min_priority)
    keep = eligible.reshape(-1)[idx]
    tree.set(idx[keep], prio[keep] ** exponent)
    return max(max_priority, float(prio.max()))


def validated_state(tensors: dict[str, Any], expected: dict[str, np.ndarray], *,
                    label: str, config_fields: str) -> dict[str, np.ndarray]:
    """Check a saved replay state against this replay's own ``state_tensors()`` and return
    it as numpy arrays; nothing is changed on failure.

    Args:
        tensors: the saved state (numpy arrays or CPU torch tensors).
        expected: this replay's ``state_tensors()``.
        label: how errors name the replay (e.g. ``"replay"``, ``"sequence replay"``).
        config_fields: what the ``config_int`` / ``config_float`` rows hold, for the error
            message (may be empty).

    Raises:
        ValueError: missing or unexpected keys, another configuration (``config_int`` /
            ``config_float`` differ), another shape or dtype, negative or non-finite
            priorities.
    """
    arrays = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
              for k, v in tensors.items()}
    missing = sorted(set(expected) - set(arrays))
    unexpected = sorted(set(arrays) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{label} state does not match: missing {missing}, unexpected {unexpected}"
        )
    for key in ("config_int", "config_float"):
        if arrays[key].shape != expected[key].shape or not np.array_equal(
            arrays[key], expected[key]
        ):
            fields = f" {config_fields}" if config_fields else ""
            raise ValueError(
                f"{label} state was saved with {key} {arrays[key].tolist()} but this replay "
                f"has {expected[key].tolist()}{fields}; build the replay with the saved "
                "configuration"
            )
    for key, ref in expected.items():
        a = arrays[key]
        if a.shape != ref.shape or a.dtype != ref.dtype:
            raise ValueError(
                f"{label} state {key!r} is {a.dtype}{list(a.shape)}, expected "
                f"{ref.dtype}{list(ref.shape)}"
            )
    prio = arrays["priorities"]
    if not np.all(np.isfinite(prio)) or prio.min() < 0:
        raise ValueError(f"{label} state has negative or non-finite priorities")
    return arrays
