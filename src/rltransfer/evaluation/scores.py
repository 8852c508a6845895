"""Human and random reference scores for the Atari-57 suite, and human-normalized scores.

Source of the numbers: google-deepmind/dqn_zoo, ``dqn_zoo/atari_data.py`` (all 57 games; the
scores are undiscounted episode returns averaged over at least 3 episodes, each episode starting
with 1-30 random no-ops and capped at 108,000 frames). The same table is used by Mnih et al.
(2015), Badia et al. (2020, Agent57) and Agarwal et al. (2021, rliable).

Human-normalized score (HNS), Mnih et al. (2015), Methods:

    HNS = (agent - random) / (human - random)

so 0 is random play and 1 is the professional human tester.
"""

from __future__ import annotations

import re
from typing import overload

import numpy as np

# game -> (random score, human score), episode returns (game points).
_ATARI_RANDOM_HUMAN: dict[str, tuple[float, float]] = {
    "alien": (227.8, 7127.7),
    "amidar": (5.8, 1719.5),
    "assault": (222.4, 742.0),
    "asterix": (210.0, 8503.3),
    "asteroids": (719.1, 47388.7),
    "atlantis": (12850.0, 29028.1),
    "bank_heist": (14.2, 753.1),
    "battle_zone": (2360.0, 37187.5),
    "beam_rider": (363.9, 16926.5),
    "berzerk": (123.7, 2630.4),
    "bowling": (23.1, 160.7),
    "boxing": (0.1, 12.1),
    "breakout": (1.7, 30.5),
    "centipede": (2090.9, 12017.0),
    "chopper_command": (811.0, 7387.8),
    "crazy_climber": (10780.5, 35829.4),
    "defender": (2874.5, 18688.9),
    "demon_attack": (152.1, 1971.0),
    "double_dunk": (-18.6, -16.4),
    "enduro": (0.0, 860.5),
    "fishing_derby": (-91.7, -38.7),
    "freeway": (0.0, 29.6),
    "frostbite": (65.2, 4334.7),
    "gopher": (257.6, 2412.5),
    "gravitar": (173.0, 3351.4),
    "hero": (1027.0, 30826.4),
    "ice_hockey": (-11.2, 0.9),
    "jamesbond": (29.0, 302.8),
    "kangaroo": (52.0, 3035.0),
    "krull": (1598.0, 2665.5),
    "kung_fu_master": (258.5, 22736.3),
    "montezuma_revenge": (0.0, 4753.3),
    "ms_pacman": (307.3, 6951.6),
    "name_this_game": (2292.3, 8049.0),
    "phoenix": (761.4, 7242.6),
    "pitfall": (-229.4, 6463.7),
    "pong": (-20.7, 14.6),
    "private_eye": (24.9, 69571.3),
    "qbert": (163.9, 13455.0),
    "riverraid": (1338.5, 17118.0),
    "road_runner": (11.5, 7845.0),
    "robotank": (2.2, 11.9),
    "seaquest": (68.4, 42054.7),
    "skiing": (-17098.1, -4336.9),
    "solaris": (1236.3, 12326.7),
    "space_invaders": (148.0, 1668.7),
    "star_gunner": (664.0, 10250.0),
    "surround": (-10.0, 6.5),
    "tennis": (-23.8, -8.3),
    "time_pilot": (3568.0, 5229.2),
    "tutankham": (11.4, 167.6),
    "up_n_down": (533.4, 11693.2),
    "venture": (0.0, 1187.5),
    "video_pinball": (16256.9, 17667.9),
    "wizard_of_wor": (563.5, 4756.5),
    "yars_revenge": (3092.9, 54576.9),
    "zaxxon": (32.5, 9173.3),
}

ATARI_GAMES: tuple[str, ...] = tuple(sorted(_ATARI_RANDOM_HUMAN))
"""The 57 game names of the table, snake_case (``"ms_pacman"``, ``"montezuma_revenge"``)."""

# Spellings seen in the literature that the CamelCase -> snake_case rule does not produce.
_ALIASES = {
    "james_bond": "jamesbond",
    "montezumas_revenge": "montezuma_revenge",
    "river_raid": "riverraid",
    "q_bert": "qbert",
    "up_and_down": "up_n_down",
    "mspacman": "ms_pacman",
}

_VERSION = re.compile(r"-v\d+$")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class UnknownGameError(KeyError):
    """Raised for a game that is not in the Atari-57 human/random table."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


def normalize_game_name(env_id: str) -> str:
    """Map an environment id or game name to the table's snake_case game name.

    ``"ALE/MsPacman-v5"``, ``"MsPacmanNoFrameskip-v4"``, ``"MsPacman"`` and ``"ms_pacman"`` all
    give ``"ms_pacman"``. The name is not checked against the table (see :func:`reference_scores`).
    """
    name = env_id.strip().split("/")[-1].split(":")[-1]
    name = _VERSION.sub("", name)
    name = name.replace("-ram", "").replace("NoFrameskip", "").replace("Deterministic", "")
    name = _CAMEL.sub("_", name)
    name = re.sub(r"[\s\-]+", "_", name).lower()
    return _ALIASES.get(name, name)


def reference_scores(game: str) -> tuple[float, float]:
    """Return ``(random_score, human_score)`` for a game name or environment id.

    Raises:
        UnknownGameError (a ``KeyError``): the game is not one of the 57 in :data:`ATARI_GAMES`.
    """
    key = normalize_game_name(game)
    try:
        return _ATARI_RANDOM_HUMAN[key]
    except KeyError:
        raise UnknownGameError(
            f"no human/random reference scores for game {game!r} (normalized to {key!r}); "
            f"known games are the Atari-57 names in rltransfer.evaluation.scores.ATARI_GAMES, "
            f"e.g. 'ms_pacman', 'hero', or ids like 'ALE/MsPacman-v5'"
        ) from None


@overload
def human_normalized_score(game: str, score: float) -> float: ...
@overload
def human_normalized_score(game: str, score: np.ndarray) -> np.ndarray: ...
def human_normalized_score(game: str, score: float | np.ndarray) -> float | np.ndarray:
    """Human-normalized score ``(score - random) / (human - random)`` (Mnih et al., 2015).

    Args:
        game: a game name or environment id (``"ALE/MsPacman-v5"``, ``"ms_pacman"``).
        score: raw episode return(s) in game points; a float or an array of any shape.

    Returns:
        A float for scalar input, else a float64 array of the same shape.

    Raises:
        UnknownGameError (a ``KeyError``): the game is not in the Atari-57 table.
    """
    random_score, human_score = reference_scores(game)
    hns = (np.asarray(score, dtype=np.float64) - random_score) / (human_score - random_score)
    if np.ndim(hns) == 0:
        return float(hns)
    return hns
