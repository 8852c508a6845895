"""Atari task variants of Behavior Transfer (Campos et al. 2021, Sec. 5.3 / appendix).

The paper pretrains on one reward function of a game and transfers to another reward function
of the same game. Two games have variants:

* ``ALE/MsPacman-v5``: ``"ghosts-easy"`` rewards only eating vulnerable ghosts (the game's
  200/400/800/1600 ghost points), pac-dots give 0; ``"ghosts-hard"`` is the same with -10 per
  pac-dot eaten. Power pellets, fruit and everything else give 0.
* ``ALE/Hero-v5``: ``"miners-easy"`` gives 1000 per miner rescued, dynamiting walls 0;
  ``"miners-hard"`` gives 1000 per miner and -300 per wall destroyed with dynamite. Creatures,
  the end-of-level power/dynamite tally and everything else give 0.

``"game"`` (the game's own score) is the first task of every Atari game.

Events are read from the console RAM (128 bytes, ``ALEInterface.getRAM()``) before (``a``) and
after (``b``) each 4-frame env step, plus the step's game reward ``r``; the rules were checked
on ale-py 0.12.1 (docs in /work/shared/REFERENCE.md, "Detecting the task-variant events").

Ms. Pac-Man (RAM indices):

* 119 items eaten (pac-dots + power pellets; drops 154 -> 0 when a maze is cleared);
  ``items = max(0, b[119] - a[119])``.
* 117 bits 2-5 power pellets left: ``pellets = popcount(a[117] & ~b[117] & 0x3C)``;
  ``dots = items - pellets``.
* 39 animation timer; an eat freeze (ghost or fruit) is ``b[39] in 51..53 and
  (a[39] == 255 or a[39] > b[39])``.
* 11 fruit x (non-zero while a fruit is on the board): fruit eaten = eat freeze and
  ``a[11] != 0 and b[11] == 0``; 123 high nibble fruit type (`MS_PACMAN_FRUIT_POINTS`).
* 1-4 ghost state (bit 7 frightened, bit 6 eaten/eyes): ghost ``g`` eaten = eat freeze, not
  fruit, bit 7 of ``a[1+g]`` set, bit 7 of ``b[1+g]`` clear, bit 6 of ``b[1+g]`` set.
* 116 bits 6-7 ghosts already eaten on the current power pellet ``k``: the next ghost is worth
  ``200 * 2**k`` (200, 400, 800, 1600).
* Rare fallback: a ghost eaten on the step that clears the maze does not show the freeze; when
  no ghost or fruit was detected, a positive remainder ``r - 10 dots - 50 pellets`` is counted
  as ghost points (`MsPacmanEvents.fallback_points`).

H.E.R.O. (RAM indices): 122 goes 0 -> 117 when dynamite destroys a wall, so
``walls = (a[122] == 0) & (b[122] == 117)`` (a dynamite-count drop alone is not a wall; walls
burned by the laser are not counted, as they give no points); a rescue gives 1000 in one frame
and nothing else gives >= 1000 within a 4-frame step, so ``miners = r // 1000``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rltransfer.errors import UserError

RAM_SIZE = 128
"""Bytes of Atari 2600 RAM (``ALEInterface.getRAM()`` length)."""

ATARI_TASKS: dict[str, tuple[str, ...]] = {
    "ms_pacman": ("game", "ghosts-easy", "ghosts-hard"),
    "hero": ("game", "miners-easy", "miners-hard"),
}
"""ALE ROM name -> task variants (the first, ``"game"``, is the game's own reward)."""

MS_PACMAN_DOT_POINTS = 10
MS_PACMAN_PELLET_POINTS = 50
MS_PACMAN_GHOST_POINTS: tuple[int, ...] = (200, 400, 800, 1600)
"""Points of the 1st..4th ghost eaten on one power pellet."""
MS_PACMAN_FRUIT_POINTS: tuple[int, ...] = (100, 200, 500, 700, 1000, 2000, 5000)
"""Points of fruit type 0..6 (RAM 123 high nibble): cherry, strawberry, orange, pretzel, apple,
pear, banana."""

HERO_MINER_POINTS = 1000
HERO_WALL_POINTS = 75
"""Game points of a wall destroyed with dynamite."""

GHOSTS_HARD_DOT_REWARD = -10.0
"""Ms. Pac-Man ``ghosts-hard``: reward per pac-dot eaten."""
MINERS_REWARD = 1000.0
"""H.E.R.O. ``miners-*``: reward per miner rescued."""
MINERS_HARD_WALL_REWARD = -300.0
"""H.E.R.O. ``miners-hard``: reward per wall destroyed with dynamite."""


class UnknownTaskError(UserError):
    """Raised for a task name that the game does not have."""


def atari_tasks(game: str) -> tuple[str, ...]:
    """Task variants of the ALE ROM ``game`` (``("game",)`` for games without variants)."""
    return ATARI_TASKS.get(game, ("game",))


@dataclass(frozen=True)
class MsPacmanEvents:
    """Ms. Pac-Man events of one env step for a batch of B envs (all arrays int64 ``[B]``).

    Attributes:
        dots: pac-dots eaten.
        pellets: power pellets eaten.
        ghosts: ghosts eaten (detected from RAM).
        ghost_points: game points of those ghosts (200 * 2**k for the k-th on this pellet),
            plus ``fallback_points``.
        fruit_points: game points of a fruit eaten (0 if none).
        fallback_points: ghost points attributed from the reward remainder on steps where the
            RAM rule cannot see the ghost (see the module docstring); normally 0.
    """

    dots: np.ndarray
    pellets: np.ndarray
    ghosts: np.ndarray
    ghost_points: np.ndarray
    fruit_points: np.ndarray
    fallback_points: np.ndarray

    def game_points(self) -> np.ndarray:
        """Sum of the detected events' game points, int64 ``[B]`` (equals the game reward when
        every scoring event was detected)."""
        return (
            MS_PACMAN_DOT_POINTS * self.dots
            + MS_PACMAN_PELLET_POINTS * self.pellets
            + self.ghost_points
            + self.fruit_points
        )


@dataclass(frozen=True)
class HeroEvents:
    """H.E.R.O. events of one env step for B envs (int64 ``[B]``): ``miners`` rescued and
    ``walls`` destroyed with dynamite."""

    miners: np.ndarray
    walls: np.ndarray


def _check_ram(ram_before: np.ndarray, ram_after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(ram_before)
    b = np.asarray(ram_after)
    if a.ndim != 2 or a.shape[1] != RAM_SIZE or a.shape != b.shape:
        raise ValueError(
            f"RAM must be uint8 arrays of shape [B, {RAM_SIZE}] (before and after the step), "
            f"got {a.shape} and {b.shape}"
        )
    return a.astype(np.int64), b.astype(np.int64)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int64)
_FRUIT = np.array(MS_PACMAN_FRUIT_POINTS + (0,) * (16 - len(MS_PACMAN_FRUIT_POINTS)), np.int64)


def ms_pacman_events(
    ram_before: np.ndarray, ram_after: np.ndarray, game_reward: np.ndarray
) -> MsPacmanEvents:
    """Detect Ms. Pac-Man scoring events of one env step from RAM (rules in the module docstring).

    Args:
        ram_before: uint8 ``[B, 128]`` RAM before the step.
        ram_after: uint8 ``[B, 128]`` RAM after the step.
        game_reward: ``[B]`` the game's reward of the step (used only for the fallback).

    Returns:
        `MsPacmanEvents` with int64 ``[B]`` arrays.

    Raises:
        ValueError: RAM arrays not of shape ``[B, 128]`` or reward not ``[B]``.
    """
    a, b = _check_ram(ram_before, ram_after)
    r = np.asarray(game_reward).astype(np.int64).reshape(-1)
    if r.shape[0] != a.shape[0]:
        raise ValueError(f"game_reward must have shape [{a.shape[0]}], got {r.shape}")
    items = np.maximum(0, b[:, 119] - a[:, 119])
    pellets = _POPCOUNT[a[:, 117] & ~b[:, 117] & 0x3C]
    dots = np.maximum(0, items - pellets)
    eat = (b[:, 39] >= 51) & (b[:, 39] <= 53) & ((a[:, 39] == 255) | (a[:, 39] > b[:, 39]))
    fruit = eat & (a[:, 11] != 0) & (b[:, 11] == 0)
    fruit_points = np.where(fruit, _FRUIT[a[:, 123] >> 4], 0)
    ga = a[:, 1:5]
    gb = b[:, 1:5]
    eaten = ((ga & 0x80) != 0) & ((gb & 0x80) == 0) & ((gb & 0x40) != 0)
    eaten &= (eat & ~fruit)[:, None]
    ghosts = eaten.sum(axis=1)
    # k-th ghost on this pellet is worth 200 * 2**k; several on one step continue the doubling.
    k0 = a[:, 116] >> 6
    ghost_points = np.zeros_like(ghosts)
    for j in range(4):
        ghost_points += np.where(ghosts > j, 200 * (2 ** np.minimum(k0 + j, 3)), 0)
    remainder = r - MS_PACMAN_DOT_POINTS * dots - MS_PACMAN_PELLET_POINTS * pellets
    fallback = np.where((ghosts == 0) & ~fruit & (remainder > 0), remainder, 0)
    return MsPacmanEvents(
        dots=dots,
        pellets=pellets,
        ghosts=ghosts,
        ghost_points=ghost_points + fallback,
        fruit_points=fruit_points,
        fallback_points=fallback,
    )


def hero_events(
    ram_before: np.ndarray, ram_after: np.ndarray, game_reward: np.ndarray
) -> HeroEvents:
    """Detect H.E.R.O. miner rescues and dynamited walls of one env step.

    Args:
        ram_before, ram_after: uint8 ``[B, 128]`` RAM before / after the step.
        game_reward: ``[B]`` the game's reward of the step (``miners = reward // 1000``).

    Returns:
        `HeroEvents` with int64 ``[B]`` arrays.

    Raises:
        ValueError: RAM arrays not of shape ``[B, 128]`` or reward not ``[B]``.
    """
    a, b = _check_ram(ram_before, ram_after)
    r = np.asarray(game_reward).astype(np.int64).reshape(-1)
    if r.shape[0] != a.shape[0]:
        raise ValueError(f"game_reward must have shape [{a.shape[0]}], got {r.shape}")
    walls = ((a[:, 122] == 0) & (b[:, 122] == 117)).astype(np.int64)
    miners = np.maximum(r, 0) // HERO_MINER_POINTS
    return HeroEvents(miners=miners, walls=walls)


TaskRewardFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""``(ram_before [B, 128] uint8, ram_after [B, 128] uint8, game_reward [B]) -> float64 [B]``."""


def _ghosts_easy(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    return ms_pacman_events(a, b, r).ghost_points.astype(np.float64)


def _ghosts_hard(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    ev = ms_pacman_events(a, b, r)
    return ev.ghost_points.astype(np.float64) + GHOSTS_HARD_DOT_REWARD * ev.dots


def _miners_easy(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    return MINERS_REWARD * hero_events(a, b, r).miners.astype(np.float64)


def _miners_hard(a: np.ndarray, b: np.ndarray, r: np.ndarray) -> np.ndarray:
    ev = hero_events(a, b, r)
    return MINERS_REWARD * ev.miners + MINERS_HARD_WALL_REWARD * ev.walls


_TASK_FNS: dict[tuple[str, str], TaskRewardFn] = {
    ("ms_pacman", "ghosts-easy"): _ghosts_easy,
    ("ms_pacman", "ghosts-hard"): _ghosts_hard,
    ("hero", "miners-easy"): _miners_easy,
    ("hero", "miners-hard"): _miners_hard,
}


def task_reward_fn(game: str, task: str) -> TaskRewardFn | None:
    """Return the RAM-based reward function of ``task`` for ALE ROM ``game``.

    Returns None for ``"game"`` (the game's own reward; no RAM needed). The function maps
    ``(ram_before [B, 128], ram_after [B, 128], game_reward [B])`` to float64 ``[B]``.

    Raises:
        UnknownTaskError: ``task`` is not one of `atari_tasks(game)` (the message lists them).
    """
    valid = atari_tasks(game)
    if task not in valid:
        raise UnknownTaskError(f"Unknown task {task!r} for Atari game {game!r}; valid: {valid}")
    if task == "game":
        return None
    return _TASK_FNS[(game, task)]
