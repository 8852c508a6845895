"""Shared action spaces across games: mapping, scattering, slicing, padding, records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rltransfer.envs.shared_actions import (
    MINATAR_ACTION_NAMES,
    MINATAR_CHANNELS,
    MINATAR_LEGAL_IDS,
    MINATAR_MAX_CHANNELS,
    ActionSpace,
    ActionSpaceMismatchError,
    action_space_for,
    atari_action_space,
    check_same_space,
    legal_logits,
    local_to_union,
    mask_logits,
    minatar_action_space,
    pad_channels,
    scatter_policy,
    union_policy_width,
    union_to_local,
)
from rltransfer.errors import UserError

BREAKOUT = minatar_action_space("MinAtar/Breakout-v1")


def test_breakout_policy_scatters_into_the_minatar_union() -> None:
    assert BREAKOUT.names == MINATAR_ACTION_NAMES == ("n", "l", "u", "r", "d", "f")
    assert BREAKOUT.legal_ids == (0, 1, 3)
    assert BREAKOUT.legal_names == ("n", "l", "r")
    out = scatter_policy(np.array([0.2, 0.5, 0.3]), BREAKOUT)
    assert out.tolist() == [0.2, 0.5, 0.0, 0.3, 0.0, 0.0]
    batch = scatter_policy(torch.tensor([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]]), BREAKOUT)
    assert isinstance(batch, torch.Tensor)
    assert torch.equal(batch, torch.tensor([[0.2, 0.5, 0, 0.3, 0, 0], [1.0, 0, 0, 0, 0, 0]]))
    with pytest.raises(ActionSpaceMismatchError, match="3 entries"):
        scatter_policy(np.ones(6), BREAKOUT)


def test_minatar_tables_match_the_installed_minatar() -> None:
    minatar = pytest.importorskip("minatar")
    for game, legal in MINATAR_LEGAL_IDS.items():
        env = minatar.Environment(game)
        assert tuple(env.minimal_action_set()) == legal, game
        assert env.state_shape()[2] == MINATAR_CHANNELS[game], game
    assert MINATAR_MAX_CHANNELS == max(MINATAR_CHANNELS.values())
    for game in MINATAR_LEGAL_IDS:  # each game's own action_map is the union, in this order
        assert tuple(minatar.Environment(game).env.action_map) == MINATAR_ACTION_NAMES
    assert minatar_action_space("MinAtar/Freeway-v0").legal_ids == tuple(range(6))


def test_atari_minimal_sets_in_full_ids() -> None:
    pytest.importorskip("ale_py")
    assert atari_action_space("ALE/Breakout-v5").legal_ids == (0, 1, 3, 4)
    pong = action_space_for("ALE/Pong-v5", 6)
    assert pong.legal_ids == (0, 1, 3, 4, 11, 12)
    assert pong.legal_names == ("NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE")
    assert union_policy_width([pong, atari_action_space("ALE/Breakout-v5")]) == 18


def test_local_union_mapping_round_trips_and_rejects_illegal_ids() -> None:
    local = np.array([[0, 1, 2], [2, 2, 0]])
    union = local_to_union(local, BREAKOUT)
    assert union.tolist() == [[0, 1, 3], [3, 3, 0]]
    assert union_to_local(union, BREAKOUT).tolist() == local.tolist()
    with pytest.raises(ActionSpaceMismatchError, match=r"union ids \[2, 5\] are not legal"):
        union_to_local(np.array([0, 2, 5]), BREAKOUT)
    with pytest.raises(ActionSpaceMismatchError, match=r"\[0, 3\)"):
        local_to_union(np.array([3]), BREAKOUT)


def test_sliced_logits_never_select_an_illegal_action() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 6))
    logits[:, [2, 4, 5]] += 100.0  # illegal actions look best
    chosen = local_to_union(np.argmax(legal_logits(logits, BREAKOUT), axis=-1), BREAKOUT)
    assert set(chosen.tolist()) <= set(BREAKOUT.legal_ids)
    sliced = legal_logits(torch.as_tensor(logits), BREAKOUT)
    assert isinstance(sliced, torch.Tensor) and sliced.shape == (500, 3)
    probs = torch.softmax(mask_logits(torch.as_tensor(logits), BREAKOUT), dim=-1)
    assert float(probs[:, [2, 4, 5]].abs().max()) == 0.0
    masked = mask_logits(logits, BREAKOUT)
    assert np.isneginf(masked[:, [2, 4, 5]]).all() and np.array_equal(masked[:, 0], logits[:, 0])


def test_channel_padding() -> None:
    obs = np.ones((2, 4, 10, 10), dtype=np.uint8)
    padded = pad_channels(obs, MINATAR_MAX_CHANNELS)
    assert padded.shape == (2, 10, 10, 10) and padded.dtype == np.uint8
    assert padded[:, :4].all() and not padded[:, 4:].any()
    t = pad_channels(torch.ones(4, 10, 10), 10)
    assert isinstance(t, torch.Tensor) and t.shape == (10, 10, 10) and float(t[4:].sum()) == 0
    assert pad_channels(obs, 4) is obs
    with pytest.raises(ActionSpaceMismatchError, match="more than the common 3"):
        pad_channels(obs, 3)


def test_record_is_json_and_a_mismatch_is_one_clear_error() -> None:
    text = json.dumps(BREAKOUT.to_json())
    assert ActionSpace.from_json(json.loads(text)) == BREAKOUT
    asterix = minatar_action_space("MinAtar/Asterix-v1")
    with pytest.raises(ActionSpaceMismatchError, match="checkpoint x has action space") as err:
        check_same_space(BREAKOUT, asterix, what="checkpoint x")
    assert isinstance(err.value, UserError)
    check_same_space(BREAKOUT, ActionSpace.from_json(BREAKOUT.to_json()), what="same")
    with pytest.raises(ActionSpaceMismatchError, match="not an action-space record"):
        ActionSpace.from_json({"names": ["a"]})
    with pytest.raises(ActionSpaceMismatchError, match="distinct"):
        ActionSpace("minatar", MINATAR_ACTION_NAMES, (0, 0))
    with pytest.raises(ActionSpaceMismatchError, match="but 4 were given"):
        action_space_for("MinAtar/Breakout-v1", 4)
    with pytest.raises(ActionSpaceMismatchError, match="share one action union"):
        union_policy_width([BREAKOUT, action_space_for("MiniGrid-Empty-5x5-v0", 3)])
    assert action_space_for("MiniGrid-Empty-5x5-v0", 3).suite == "local"
