from __future__ import annotations

import numpy as np
import pytest

from rltransfer.evaluation.scores import (
    ATARI_GAMES,
    UnknownGameError,
    human_normalized_score,
    normalize_game_name,
    reference_scores,
)


def test_table_has_57_games_with_reference_values() -> None:
    assert len(ATARI_GAMES) == 57
    assert reference_scores("ms_pacman") == (307.3, 6951.6)
    assert reference_scores("hero") == (1027.0, 30826.4)
    assert reference_scores("montezuma_revenge") == (0.0, 4753.3)
    assert reference_scores("pong") == (-20.7, 14.6)


@pytest.mark.parametrize(
    ("env_id", "game"),
    [
        ("ALE/MsPacman-v5", "ms_pacman"),
        ("MsPacmanNoFrameskip-v4", "ms_pacman"),
        ("ALE/MsPacman-ram-v5", "ms_pacman"),
        ("ms_pacman", "ms_pacman"),
        ("ALE/Hero-v5", "hero"),
        ("ALE/MontezumaRevenge-v5", "montezuma_revenge"),
        ("ALE/UpNDown-v5", "up_n_down"),
        ("ALE/KungFuMaster-v5", "kung_fu_master"),
        ("ALE/WizardOfWor-v5", "wizard_of_wor"),
    ],
)
def test_normalize_game_name(env_id: str, game: str) -> None:
    assert normalize_game_name(env_id) == game


def test_every_registered_ale_game_of_the_57_maps_into_table() -> None:
    gym = pytest.importorskip("gymnasium")
    ale_py = pytest.importorskip("ale_py")
    gym.register_envs(ale_py)
    ids = [k for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")]
    names = {normalize_game_name(k) for k in ids}
    assert set(ATARI_GAMES) <= names


def test_hns_by_hand_ms_pacman() -> None:
    # midpoint of random 307.3 and human 6951.6 is 3629.45 -> HNS 0.5
    assert human_normalized_score("ALE/MsPacman-v5", 3629.45) == pytest.approx(0.5)
    assert human_normalized_score("ms_pacman", 307.3) == pytest.approx(0.0)
    assert human_normalized_score("ms_pacman", 6951.6) == pytest.approx(1.0)
    # (1000 - 307.3) / 6644.3
    assert human_normalized_score("ms_pacman", 1000.0) == pytest.approx(692.7 / 6644.3)
    assert isinstance(human_normalized_score("ms_pacman", 1000.0), float)


def test_hns_vectorized_and_negative_scale_game() -> None:
    out = human_normalized_score("hero", np.array([[1027.0, 30826.4], [15926.7, 0.0]]))
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out, [[0.0, 1.0], [0.5, -1027.0 / 29799.4]])
    # skiing: random -17098.1, human -4336.9 (both negative)
    assert human_normalized_score("skiing", -4336.9) == pytest.approx(1.0)


def test_unknown_game_raises_keyerror_with_message() -> None:
    with pytest.raises(KeyError, match="no human/random reference scores"):
        human_normalized_score("ALE/Tetris-v5", 1.0)
    with pytest.raises(UnknownGameError, match="ATARI_GAMES"):
        reference_scores("MiniGrid-Empty-5x5-v0")
