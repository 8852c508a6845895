from __future__ import annotations

import numpy as np
import pytest

from rltransfer.replay import SequenceReplay, TransitionReplay
from rltransfer.replay.game_segment import GameSegmentReplay
from rltransfer.replay.slots import (
    check_indices,
    importance_weights,
    set_eligible,
    set_priorities,
    stack_zero_mask,
    validated_state,
)
from rltransfer.replay.sum_tree import SumTree


def test_stack_zero_mask_by_hand() -> None:
    # S = 3; first_back[:, 0] is the newest frame's start flag.
    first_back = np.array([[False, False], [True, False], [False, True]])
    # row 1: the newest frame starts the episode -> both older frames are zeroed;
    # row 2: the frame one step back starts it -> only the oldest is zeroed.
    expected = np.array([[False, False, False], [True, True, False], [True, False, False]])
    np.testing.assert_array_equal(stack_zero_mask(first_back), expected)


def test_importance_weights_by_hand() -> None:
    tree = SumTree(4)
    tree.set(np.arange(4), np.array([1.0, 2.0, 3.0, 4.0]))
    flat = np.array([0, 3])
    # P = [0.1, 0.4], N = 4, beta = 1: (N P)^-1 = [2.5, 0.625] -> / max = [1, 0.25].
    w = importance_weights(tree, flat, tree.total, 4, 1.0)
    np.testing.assert_allclose(w, [1.0, 0.25])
    assert w.dtype == np.float32
    # beta = 0.5: sqrt of the above ratios.
    np.testing.assert_allclose(importance_weights(tree, flat, tree.total, 4, 0.5), [1.0, 0.5])


def test_importance_weights_are_normalised_over_the_batch_not_the_buffer() -> None:
    """SEED RL's R2D2 replay normalisation (docstring): a batch without the buffer's lowest
    priority still has a weight of exactly 1."""
    tree = SumTree(5)
    tree.set(np.arange(5), np.array([1.0, 2.0, 3.0, 4.0, 0.0]))  # leaf 4 not eligible
    flat = np.array([1, 2, 2])
    # total 10, N = 4, beta = 1: P = [0.2, 0.3, 0.3]; (N P)^-1 = [1.25, 0.8333, 0.8333];
    # over the batch max 1.25: [1, 2/3, 2/3]. (Over the whole buffer the max would be the
    # smallest priority's (4 * 0.1)^-1 = 2.5, giving [0.5, 1/3, 1/3].)
    w = importance_weights(tree, flat, tree.total, 4, 1.0)
    np.testing.assert_allclose(w, [1.0, 2 / 3, 2 / 3], rtol=1e-6)
    # beta = 0.4: ((N P) / (N P_max_weight))^-0.4 = (0.3 / 0.2)^-0.4 = 0.850283
    w = importance_weights(tree, flat, tree.total, 4, 0.4)
    np.testing.assert_allclose(w, [1.0, 0.850283, 0.850283], rtol=1e-5)


def test_set_eligible_and_priorities_keep_the_tree_in_sync() -> None:
    eligible = np.zeros((2, 3), dtype=bool)
    tree = SumTree(6)
    assert set_eligible(eligible, tree, np.array([0, 4]), np.array([True, True]), 2.0) == 2
    assert tree.total == pytest.approx(4.0)
    assert set_eligible(eligible, tree, np.array([0, 4]), np.array([True, False]), 9.0) == -1
    assert tree.total == pytest.approx(2.0) and eligible.reshape(-1).tolist()[4] is False
    # p = max(p, 0.5)^alpha with alpha 2 on eligible ids only; id 4 is skipped (overwritten).
    new_max = set_priorities(tree, eligible, np.array([0, 4]), np.array([0.1, 3.0]),
                             min_priority=0.5, exponent=2.0, max_priority=1.0)
    assert tree.get(np.array([0, 4])).tolist() == [0.25, 0.0]
    assert new_max == 3.0
    with pytest.raises(ValueError, match="finite"):
        set_priorities(tree, eligible, np.array([0]), np.array([np.nan]), min_priority=0.5,
                       exponent=1.0, max_priority=1.0)
    with pytest.raises(ValueError, match="not sampleable transitions"):
        check_indices(np.array([4]), eligible, "transitions")
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        check_indices(np.array([6]), eligible, "transitions")


def _replays() -> list[object]:
    return [
        TransitionReplay(2, 16, (1, 4, 4), frame_stack=2, n_step=2),
        SequenceReplay(2, 32, (1, 4, 4), state_dim=4, sequence_length=4, burn_in=2,
                       sequence_overlap=2, n_step=2),
        GameSegmentReplay(2, 16, (1, 4, 4), num_actions=3, frame_stack=2, unroll_steps=2,
                          td_steps=2),
    ]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_every_replay_rejects_foreign_and_corrupt_states(index: int) -> None:
    replay = _replays()[index]
    state = replay.state_tensors()  # type: ignore[attr-defined]
    other = dict(state, config_int=state["config_int"] + 1)
    with pytest.raises(ValueError, match="saved with config_int"):
        replay.load_state_tensors(other)  # type: ignore[attr-defined]
    bad = dict(state, priorities=np.full_like(state["priorities"], np.nan))
    with pytest.raises(ValueError, match="non-finite priorities"):
        replay.load_state_tensors(bad)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="missing"):
        validated_state({k: v for k, v in state.items() if k != "frames"}, state,
                        label="replay", config_fields="")
    replay.load_state_tensors(state)  # type: ignore[attr-defined]  # its own state loads
