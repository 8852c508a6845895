"""Behavior Transfer Atari task variants on real emulator states (ale-py).

Events are found by playing: a scripted route in H.E.R.O. (dynamite a wall, rescue the first
miner) and a seeded random policy in Ms. Pac-Man; the states just before the events are cloned
and replayed, and the variant rewards are compared with numbers computed by hand from the
game's scoring (pac-dot 10, power pellet 50, ghosts 200/400/800/1600, cherry 100 ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

pytest.importorskip("ale_py")

from rltransfer.envs import env_spec, make_env
from rltransfer.envs.atari import AtariRamVectorEnv
from rltransfer.envs.atari_tasks import (
    MS_PACMAN_FRUIT_POINTS,
    TaskRewardFn,
    UnknownTaskError,
    hero_events,
    ms_pacman_events,
    task_reward_fn,
)

PACMAN_TASKS = ("game", "ghosts-easy", "ghosts-hard")
HERO_TASKS = ("game", "miners-easy", "miners-hard")


def _env(game: str, task: str) -> AtariRamVectorEnv:
    """One deterministic emulator (no sticky actions, no no-ops) with ``task``'s reward."""
    env = AtariRamVectorEnv(
        game, 1, reward_fn=task_reward_fn(game, task), sticky_action_prob=0.0, noop_max=0
    )
    env.reset()  # deterministic without a seed: no sticky actions, no no-ops
    return env


def _replay(envs: list[AtariRamVectorEnv], state: Any, action: int) -> np.ndarray:
    """Restore ``state`` into every env, step ``action``; rewards ``[len(envs)]``."""
    out = []
    for env in envs:
        env.ales[0].restoreState(state)
        out.append(env.step(np.array([action]))[1][0])
    return np.array(out)


# --------------------------------------------------------------------------- synthetic RAM
def _fn(game: str, task: str) -> TaskRewardFn:
    fn = task_reward_fn(game, task)
    assert fn is not None
    return fn


def _ram(**values: int) -> np.ndarray:
    ram = np.zeros((1, 128), dtype=np.uint8)
    for key, v in values.items():
        ram[0, int(key[1:])] = v
    return ram


def test_ms_pacman_rules_on_hand_made_ram() -> None:
    # 2 items eaten, one of them the pellet whose bit 3 clears: 1 dot + 1 pellet.
    a = _ram(r119=10, r117=0x3C)
    b = _ram(r119=12, r117=0x34)
    ev = ms_pacman_events(a, b, np.array([60]))
    assert (ev.dots[0], ev.pellets[0], ev.ghosts[0], ev.fallback_points[0]) == (1, 1, 0, 0)
    assert _fn("ms_pacman", "ghosts-hard")(a, b, np.array([60]))[0] == -10.0
    # Ghost 2 eaten (frightened -> eyes) during an eat freeze, one ghost already eaten: 400.
    a = _ram(r39=255, r2=0x80, r116=1 << 6, r11=0)
    b = _ram(r39=52, r2=0x40, r116=2 << 6)
    ev = ms_pacman_events(a, b, np.array([400]))
    assert (ev.ghosts[0], ev.ghost_points[0], ev.fruit_points[0]) == (1, 400, 0)
    # The frightened bit dropping without the eyes bit (timer expiry) is not a ghost eaten.
    b_expiry = _ram(r39=52, r2=0x00, r116=2 << 6)
    assert ms_pacman_events(a, b_expiry, np.array([0])).ghosts[0] == 0
    # Fruit (x goes non-zero -> 0 during a freeze), type 3 = pretzel 700.
    a = _ram(r39=60, r11=40, r123=3 << 4)
    b = _ram(r39=51, r11=0, r123=3 << 4)
    assert ms_pacman_events(a, b, np.array([700])).fruit_points[0] == 700
    with pytest.raises(ValueError, match=r"\[B, 128\]"):
        ms_pacman_events(np.zeros((1, 64)), np.zeros((1, 64)), np.zeros(1))


def test_hero_rules_on_hand_made_ram() -> None:
    a = _ram(r122=0)
    b = _ram(r122=117)
    ev = hero_events(a, b, np.array([1075]))
    assert (ev.miners[0], ev.walls[0]) == (1, 1)
    assert _fn("hero", "miners-hard")(a, b, np.array([1075]))[0] == 700.0
    assert _fn("hero", "miners-easy")(a, b, np.array([1075]))[0] == 1000.0
    # 122 staying at 117 (the 30 frames after the blast) is not a second wall.
    assert hero_events(b, b, np.array([0])).walls[0] == 0


def test_task_names_and_errors() -> None:
    assert env_spec("ALE/MsPacman-v5").tasks == PACMAN_TASKS
    assert env_spec("ALE/Hero-v5").tasks == HERO_TASKS
    assert env_spec("ALE/Pong-v5").tasks == ("game",)
    assert task_reward_fn("ms_pacman", "game") is None
    with pytest.raises(UnknownTaskError, match="miners-easy"):
        task_reward_fn("hero", "ghosts-easy")
    with pytest.raises(ValueError, match="valid tasks"):
        make_env("ALE/Pong-v5", 1, 0, task="ghosts-easy")


# --------------------------------------------------------------------------- H.E.R.O.
HERO_SCRIPT = [  # level 1: land, walk to the wall, drop dynamite, retreat, fall, laser, rescue
    ("NOOP", 60), ("RIGHT", 30), ("DOWN", 1), ("LEFT", 10), ("NOOP", 30), ("RIGHT", 40),
    ("LEFTFIRE", 60),
]


def test_hero_wall_and_miner_rewards() -> None:
    envs = [_env("hero", t) for t in HERO_TASKS]
    names = envs[0].action_names
    rewards = []
    for name, n in HERO_SCRIPT:
        for _ in range(n):
            a = np.array([names.index(name)])
            steps = [env.step(a) for env in envs]
            for *_, info in steps[1:]:  # all envs run the same game
                assert info["game_reward"][0] == steps[0][4]["game_reward"][0]
            rewards.append([s[1][0] for s in steps])
    r = np.array(rewards)  # [T, 3] game, miners-easy, miners-hard
    wall = np.flatnonzero(r[:, 0] == 75)
    rescue = np.flatnonzero(r[:, 0] >= 1000)
    assert len(wall) == 1 and len(rescue) == 1 and wall[0] < rescue[0]
    np.testing.assert_array_equal(r[wall[0]], [75, 0, -300])
    np.testing.assert_array_equal(r[rescue[0], 1:], [1000, 1000])
    assert r[:, 1].sum() == 1000 and r[:, 2].sum() == 1000 - 300
    # Creature (50) and the power / dynamite tally (+20 / +50 per unit) are not task rewards.
    assert r[:, 0].sum() > 1075 + 50
    assert np.count_nonzero(r[:, 1]) == 1 and np.count_nonzero(r[:, 2]) == 2


# --------------------------------------------------------------------------- Ms. Pac-Man
@dataclass
class _Rollout:
    states: list[Any] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    ram_before: list[np.ndarray] = field(default_factory=list)
    ram_after: list[np.ndarray] = field(default_factory=list)
    game_reward: list[float] = field(default_factory=list)
    task_reward: list[float] = field(default_factory=list)


@pytest.fixture(scope="module")
def pacman_envs() -> list[AtariRamVectorEnv]:
    """Ms. Pac-Man envs for the tasks game, ghosts-easy, ghosts-hard."""
    return [_env("ms_pacman", t) for t in PACMAN_TASKS]


@pytest.fixture(scope="module")
def pacman_rollout(pacman_envs: list[AtariRamVectorEnv]) -> _Rollout:
    """3000+ steps of a seeded random policy (actions held 8 steps) on the ghosts-easy env, until
    a ghost (reward >= 200: no fruit of the first maze is worth that) and a cherry (100 / 110)
    have been eaten."""
    env = pacman_envs[1]
    ale = env.ales[0]
    rng = np.random.default_rng(0)
    out = _Rollout()
    action = 0
    for t in range(12_000):
        if t % 8 == 0:
            action = int(rng.integers(env.single_action_space.n))
        out.states.append(ale.cloneState())
        out.ram_before.append(ale.getRAM().copy())
        _, reward, term, trunc, info = env.step(np.array([action]))
        out.ram_after.append(ale.getRAM().copy())
        out.actions.append(action)
        out.game_reward.append(float(info["game_reward"][0]))
        out.task_reward.append(float(reward[0]))
        if term[0] or trunc[0]:
            env.step(np.array([0]))  # the autoreset step (reward 0), not recorded
        r = np.array(out.game_reward)
        if t >= 3000 and (r >= 200).any() and np.isin(r, (100, 110)).any():
            break
    out.states = out.states[: len(out.actions)]
    return out


def test_ms_pacman_events_reproduce_game_score(pacman_rollout: _Rollout) -> None:
    ro = pacman_rollout
    a, b = np.stack(ro.ram_before), np.stack(ro.ram_after)
    r = np.array(ro.game_reward)
    ev = ms_pacman_events(a, b, r)
    np.testing.assert_array_equal(ev.game_points(), r)
    assert ev.fallback_points.sum() == 0  # every ghost seen through RAM, none guessed
    assert ev.dots.sum() > 100 and ev.pellets.sum() >= 1 and ev.ghosts.sum() >= 1
    assert (ev.fruit_points > 0).sum() >= 1
    # The env returned the ghosts-easy reward: exactly the ghost points.
    np.testing.assert_array_equal(np.array(ro.task_reward), ev.ghost_points)


def test_ms_pacman_pac_dot_and_pellet(
    pacman_rollout: _Rollout, pacman_envs: list[AtariRamVectorEnv]
) -> None:
    ro = pacman_rollout
    r = np.array(ro.game_reward)
    envs = pacman_envs
    dot = int(np.flatnonzero(r == 10)[0])
    np.testing.assert_array_equal(_replay(envs, ro.states[dot], ro.actions[dot]), [10, 0, -10])
    pellet = int(np.flatnonzero(r == 50)[0])
    np.testing.assert_array_equal(
        _replay(envs, ro.states[pellet], ro.actions[pellet]), [50, 0, 0]
    )


def test_ms_pacman_ghost_points(
    pacman_rollout: _Rollout, pacman_envs: list[AtariRamVectorEnv]
) -> None:
    ro = pacman_rollout
    r = np.array(ro.game_reward)
    i = int(np.flatnonzero(r >= 200)[0])
    envs = pacman_envs
    got = _replay(envs, ro.states[i], ro.actions[i])
    dots = (r[i] - 200) // 10  # first ghost on this pellet is 200; the rest are pac-dots
    assert r[i] - 200 == 10 * dots and 0 <= dots <= 2
    np.testing.assert_array_equal(got, [r[i], 200, 200 - 10 * dots])
    # RAM 116 bits 6-7 count the ghosts already eaten on this pellet: with k eaten, the game
    # itself scores 200 * 2**k, and the ghost tasks follow.
    ram116 = int(ro.ram_before[i][116])
    for k, points in enumerate((200, 400, 800, 1600)):
        rewards = []
        for env in envs:
            env.ales[0].restoreState(ro.states[i])
            env.ales[0].setRAM(116, (k << 6) | (ram116 & 0x3F))
            rewards.append(env.step(np.array([ro.actions[i]]))[1][0])
        np.testing.assert_array_equal(rewards, [points + 10 * dots, points, points - 10 * dots])


def test_ms_pacman_fruit_gives_no_task_reward(
    pacman_rollout: _Rollout, pacman_envs: list[AtariRamVectorEnv]
) -> None:
    ro = pacman_rollout
    r = np.array(ro.game_reward)
    i = int(np.flatnonzero(np.isin(r, (100, 110)))[0])
    envs = pacman_envs
    dots = int(r[i] - 100) // 10
    ram123 = int(ro.ram_before[i][123])
    for fruit_type, points in enumerate(MS_PACMAN_FRUIT_POINTS):
        # RAM 123's high nibble is the fruit type: the game scores the table's points for it.
        rewards = []
        for env in envs:
            env.ales[0].restoreState(ro.states[i])
            env.ales[0].setRAM(123, (fruit_type << 4) | (ram123 & 0x0F))
            before = env.ales[0].getRAM().copy()
            rewards.append(env.step(np.array([ro.actions[i]]))[1][0])
            after = env.ales[0].getRAM().copy()
        np.testing.assert_array_equal(rewards, [points + 10 * dots, 0, -10 * dots])
        ev = ms_pacman_events(before[None], after[None], np.array([rewards[0]]))
        assert ev.fruit_points[0] == points


def test_make_env_task_variant_contract() -> None:
    env = make_env("ALE/MsPacman-v5", 2, 3, task="ghosts-hard", reward_free=True)
    obs, info = env.reset()
    assert obs.shape == (2, 1, 84, 84) and obs.dtype == np.uint8
    total_task = 0.0
    total_game = 0.0
    for _ in range(150):  # the first ~60 steps are the start jingle
        obs, reward, _, _, info = env.step(np.full(2, 3))  # LEFT: eats pac-dots
        assert (reward == 0).all()  # reward-free: the task reward is only logged
        total_task += info["task_reward"].sum()
        total_game += info["game_reward"].sum()
    assert total_game >= 100 and total_task == -total_game  # only pac-dots: -10 vs +10 each
    env.close()
