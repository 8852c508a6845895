"""Atari suite: ale_py's native vector env for the game reward, and a per-env Python path with
RAM access for the Behavior Transfer task variants (`rltransfer.envs.atari_tasks`).

Preprocessing (Mnih et al. 2015; Machado et al. 2018), identical on both paths: frame skip 4
with max-pooling of the last two frames, area-resized to ``frame_size x frame_size`` (84 for
DQN/R2D2, 96 for EfficientZero), grayscale (``C=1``) or RGB (``C=3``), up to 30 no-op actions
at reset, FIRE on reset where the game has it, no reward clipping (the learner uses value
rescaling instead), one frame per step (the agent stacks frames). Observations are uint8
``[B, C, frame_size, frame_size]``.

Paths:

* ``task="game"``: `ale_py.AtariVectorEnv` (C++ threads, ``stack_num=1``). It exposes no RAM.
* task variants (``"ghosts-easy"`` ...): `AtariRamVectorEnv`, B `ale_py.ALEInterface`
  emulators stepped from Python with the same preprocessing as ale_py's C++ env (its
  ``PreprocessedEnv``: frame capture, max-pool, OpenCV INTER_AREA resize, no-op/FIRE reset,
  life-loss and truncation flags), reading RAM before and after each step to compute the
  task reward.

The screen resize both paths share is in `rltransfer.envs.atari_frames`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv, VectorObservationWrapper

from rltransfer.envs.atari_frames import (
    ALE_SCREEN_HEIGHT,
    ALE_SCREEN_WIDTH,
    AreaResize,
    check_frame_size,
)
from rltransfer.envs.atari_tasks import RAM_SIZE, TaskRewardFn, task_reward_fn
from rltransfer.envs.spec import atari_game, require

FRAME_SKIP = 4
"""Emulator frames per env step."""


class _RgbChannelsFirst(VectorObservationWrapper):
    """AtariVectorEnv RGB observations ``[B, 1, H, W, 3]`` -> ``[B, 3, H, W]``."""

    def __init__(self, env: VectorEnv) -> None:
        super().__init__(env)
        _, h, w, c = tuple(env.single_observation_space.shape or ())
        self.single_observation_space = spaces.Box(0, 255, shape=(c, h, w), dtype=np.uint8)
        self.observation_space = spaces.Box(
            0, 255, shape=(env.num_envs, c, h, w), dtype=np.uint8
        )

    def observations(self, observations: Any) -> Any:
        """Move the colour axis first and drop the stack axis."""
        return np.ascontiguousarray(np.moveaxis(observations[:, 0], 3, 1))


def make_atari_vector_env(
    env_id: str,
    num_envs: int,
    *,
    sticky_action_prob: float,
    terminal_on_life_loss: bool,
    max_episode_frames: int,
    task: str = "game",
    frame_size: int = 84,
    grayscale: bool = True,
) -> VectorEnv:
    """Build the Atari vector env for ``env_id`` (e.g. ``ALE/Pong-v5`` -> ROM ``pong``).

    Args:
        env_id: an ``ALE/<Game>-v5`` id.
        num_envs: number of emulators B.
        sticky_action_prob: ALE ``repeat_action_probability`` (0.25 is the v5 default).
        terminal_on_life_loss: report ``terminated=True`` when a life is lost. The game is
            NOT restarted then (ALE ``life_loss_info``): the next step continues the same
            game, as in DQN's training convention; the full reset happens at game over
            (``info["lives"] == 0`` on a terminated step).
        max_episode_frames: truncate a game after this many emulator frames (108,000 = 30 min).
        task: ``"game"`` (the game's reward; fast C++ path) or a variant of
            `rltransfer.envs.atari_tasks.atari_tasks` (Python path `AtariRamVectorEnv`).
        frame_size: observation side length in pixels, in ``[8, 160]``.
        grayscale: 1 gray channel (True) or 3 RGB channels (False).

    Returns:
        A NEXT_STEP-autoreset `VectorEnv`: obs uint8 ``[B, C, frame_size, frame_size]``,
        rewards (int32 on the fast path, float64 task rewards on the Python path), info with
        ``lives``, ``frame_number``, ``episode_frame_number``, ``env_id`` (Python path also
        ``game_reward``).

    Raises:
        UnknownEnvError: not an ALE v5 id; ValueError: unknown task or bad ``frame_size``;
        ImportError: ale_py is not installed.
    """
    game, _ = atari_game(env_id)
    size = check_frame_size(frame_size)
    reward_fn = task_reward_fn(game, task)
    if reward_fn is not None:
        return AtariRamVectorEnv(
            game,
            num_envs,
            reward_fn=reward_fn,
            sticky_action_prob=sticky_action_prob,
            terminal_on_life_loss=terminal_on_life_loss,
            max_episode_frames=max_episode_frames,
            frame_size=size,
            grayscale=grayscale,
        )
    ale_py = require("atari")
    env: VectorEnv = ale_py.AtariVectorEnv(
        game,
        num_envs,
        max_num_frames_per_episode=int(max_episode_frames),
        repeat_action_probability=float(sticky_action_prob),
        full_action_space=False,
        autoreset_mode=AutoresetMode.NEXT_STEP,
        img_height=size,
        img_width=size,
        grayscale=bool(grayscale),
        stack_num=1,
        frameskip=FRAME_SKIP,
        maxpool=True,
        noop_max=30,
        episodic_life=False,
        life_loss_info=bool(terminal_on_life_loss),
        reward_clipping=False,
        use_fire_reset=True,
    )
    # ale_py reports (1, H, W) for gray (already channels first) and (1, H, W, 3) for RGB.
    expected = (1, size, size) if grayscale else (1, size, size, 3)
    single = env.single_observation_space
    if not isinstance(single, spaces.Box) or single.shape != expected:
        raise RuntimeError(
            f"ale_py returned observation space {single}, expected Box uint8 {expected}; "
            "this ale_py version is not supported (need ale-py>=0.10)"
        )
    if not grayscale:
        env = _RgbChannelsFirst(env)
    return env


class AtariRamVectorEnv(VectorEnv):
    """B ALE emulators stepped from Python, with RAM-based task rewards.

    Reproduces ale_py's ``AtariVectorEnv`` (``stack_num=1``, ``maxpool=True``,
    ``episodic_life=False``, ``reward_clipping=False``, NEXT_STEP autoreset) step for step:
    on an env step the action is repeated for 4 frames (stopping early at game over or
    truncation), the screens of frames 3 and 4 are max-pooled and area-resized; at reset FIRE
    is pressed once if the game has it, then ``U{0..noop_max-1} - fire`` no-ops. Given the same
    actions, no sticky actions and no no-ops, its observations, rewards and flags equal those of
    ``AtariVectorEnv`` (tests/envs/test_atari_frames.py).

    Each step also reads the 128-byte RAM of every env before and after the step and returns
    ``reward_fn(ram_before, ram_after, game_reward)`` as the reward (the game reward when
    ``reward_fn`` is None).

    Args:
        game: ALE ROM name (``"ms_pacman"``, ``"hero"``).
        num_envs: B >= 1.
        reward_fn: task reward, see `rltransfer.envs.atari_tasks.task_reward_fn`.
        sticky_action_prob: ALE ``repeat_action_probability``.
        terminal_on_life_loss: ``terminated=True`` on a life loss (the game continues).
        max_episode_frames: truncate after this many emulator frames.
        frame_size: observation side, ``[8, 160]``.
        grayscale: 1 gray or 3 RGB channels.
        noop_max: no-ops at reset are drawn from ``[0, noop_max)`` (30 as in DQN; 0 disables).

    Step returns: obs uint8 ``[B, C, S, S]``, reward float64 ``[B]``, terminated / truncated
    bool ``[B]``, info: ``lives`` / ``frame_number`` / ``episode_frame_number`` / ``env_id``
    int32 ``[B]``, ``game_reward`` float64 ``[B]`` (the game's own score change).

    Attributes:
        ales: the B ``ale_py.ALEInterface`` emulators (tests use ``cloneState`` /
            ``restoreState`` on them; RAM is read from the emulator at every step, so
            restoring a state between steps is safe).

    Raises:
        ValueError: ``num_envs < 1``, ``noop_max < 0``, unknown ROM, ``frame_size`` outside
            ``[8, 160]``; ImportError: ale_py is missing.

    Speed (B=8, 2 shared cores): about 1,300 env steps per CPU-second for Ms. Pac-Man gray 84
    (C++ path 1,600), but on one core only, where the C++ path spreads envs over threads.
    """

    def __init__(
        self,
        game: str,
        num_envs: int,
        *,
        reward_fn: TaskRewardFn | None,
        sticky_action_prob: float = 0.25,
        terminal_on_life_loss: bool = False,
        max_episode_frames: int = 108_000,
        frame_size: int = 84,
        grayscale: bool = True,
        noop_max: int = 30,
    ) -> None:
        ale_py = require("atari")
        from ale_py import roms

        if int(num_envs) < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if int(noop_max) < 0:
            raise ValueError(f"noop_max must be >= 0, got {noop_max}")
        rom_path = roms.get_rom_path(game)
        if rom_path is None:
            raise ValueError(f"{game!r} is not an ALE ROM name (snake_case, e.g. 'ms_pacman')")
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.num_envs = int(num_envs)
        self.reward_fn = reward_fn
        self._rom_path = rom_path
        self._life_loss = bool(terminal_on_life_loss)
        self._max_frames = int(max_episode_frames)
        self._noop_max = int(noop_max)
        self._resize = AreaResize(frame_size)
        self._grayscale = bool(grayscale)
        self.ales: list[Any] = []
        for _ in range(self.num_envs):
            ale = ale_py.ALEInterface()
            ale.setFloat("repeat_action_probability", float(sticky_action_prob))
            self.ales.append(ale)
        # loadROM is slow (~0.3 s: the console boots); envs 1.. load at their first reset, with
        # the reset's seed when one is given (as ale_py's C++ env, which reloads on seeding).
        self._loaded = np.zeros(self.num_envs, dtype=bool)
        self._load(0, None)
        self._action_set = list(self.ales[0].getMinimalActionSet())
        self._has_fire = ale_py.Action.FIRE in self._action_set
        self._fire = ale_py.Action.FIRE
        self._noop = ale_py.Action.NOOP
        raw_shape: tuple[int, ...] = (ALE_SCREEN_HEIGHT, ALE_SCREEN_WIDTH)
        if not self._grayscale:
            raw_shape = (*raw_shape, 3)
        # raw[i, 0]: last frame (max-pooled in place), raw[i, 1]: second to last.
        self._raw = np.zeros((self.num_envs, 2, *raw_shape), dtype=np.uint8)
        self._rngs = [np.random.default_rng() for _ in range(self.num_envs)]
        self._elapsed = np.zeros(self.num_envs, dtype=np.int64)
        self._lives = np.zeros(self.num_envs, dtype=np.int32)
        self._episode_over = np.ones(self.num_envs, dtype=bool)
        channels = 1 if self._grayscale else 3
        size = self._resize.size
        self.single_observation_space = spaces.Box(
            0, 255, shape=(channels, size, size), dtype=np.uint8
        )
        self.observation_space = spaces.Box(
            0, 255, shape=(self.num_envs, channels, size, size), dtype=np.uint8
        )
        self.single_action_space: spaces.Discrete = spaces.Discrete(len(self._action_set))
        self.action_space = spaces.MultiDiscrete(np.full(self.num_envs, len(self._action_set)))
        self.metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    @property
    def action_names(self) -> list[str]:
        """Names of the minimal action set in action-index order (``"NOOP"``, ``"FIRE"``...)."""
        return [a.name for a in self._action_set]

    # -- emulator helpers -------------------------------------------------------------------
    def _grab(self, i: int, slot: int) -> None:
        if self._grayscale:
            self.ales[i].getScreenGrayscale(self._raw[i, slot])
        else:
            self.ales[i].getScreenRGB(self._raw[i, slot])

    def _load(self, i: int, seed: int | None) -> None:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        self.ales[i].setInt("random_seed", int(seed) % (2**31))
        self.ales[i].loadROM(self._rom_path)
        self._loaded[i] = True

    def _reset_one(self, i: int, seed: int | None) -> None:
        ale = self.ales[i]
        if seed is not None or not self._loaded[i]:
            self._load(i, seed)
        if seed is not None:
            self._rngs[i] = np.random.default_rng(int(seed))
        ale.reset_game()
        fire = self._has_fire
        if fire:
            ale.act(self._fire)
        noops = int(self._rngs[i].integers(0, max(self._noop_max, 1))) - int(fire)
        for _ in range(noops):
            ale.act(self._noop)
            if ale.game_over():
                ale.reset_game()
        self._grab(i, 0)
        self._raw[i, 1] = 0
        self._elapsed[i] = 0
        self._lives[i] = ale.lives()
        self._episode_over[i] = False

    def _observe(self) -> np.ndarray:
        np.maximum(self._raw[:, 0], self._raw[:, 1], out=self._raw[:, 0])
        return self._resize(self._raw[:, 0])

    def _info(self, game_reward: np.ndarray) -> dict[str, Any]:
        return {
            "lives": self._lives.copy(),
            "frame_number": np.array([a.getFrameNumber() for a in self.ales], dtype=np.int32),
            "episode_frame_number": np.array(
                [a.getEpisodeFrameNumber() for a in self.ales], dtype=np.int32
            ),
            "env_id": np.arange(self.num_envs, dtype=np.int32),
            "game_reward": game_reward,
        }

    # -- VectorEnv API ----------------------------------------------------------------------
    def reset(
        self, *, seed: int | Sequence[int] | np.ndarray | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the envs (all, or those in ``options["reset_mask"]``, bool ``[B]``).

        ``seed``: an int seeds the reset envs with ``seed, seed + 1, ...``; an array gives one
        seed per reset env; None continues each env's random streams. Masked-out envs keep
        their state (their current frame is returned). Returns obs ``[B, C, S, S]`` and info.

        Raises:
            ValueError: a mask or seed array of the wrong shape.
        """
        mask = np.ones(self.num_envs, dtype=bool)
        if options is not None and "reset_mask" in options:
            mask = np.asarray(options["reset_mask"])
            if mask.dtype != np.bool_ or mask.shape != (self.num_envs,):
                raise ValueError(f"reset_mask must be a bool array of shape ({self.num_envs},)")
        idx = np.flatnonzero(mask)
        if seed is None:
            seeds: list[int | None] = [None] * len(idx)
        elif isinstance(seed, (int, np.integer)):
            seeds = [int(seed) + k for k in range(len(idx))]
        else:
            arr = np.asarray(seed).reshape(-1)
            if arr.shape != (len(idx),):
                raise ValueError(f"seed array must have one entry per reset env ({len(idx)})")
            seeds = [int(s) for s in arr]
        for i, s in zip(idx, seeds, strict=True):
            self._reset_one(int(i), s)
        return self._observe(), self._info(np.zeros(self.num_envs, dtype=np.float64))

    def step(
        self, actions: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step all envs with int ``actions [B]`` (see the class docstring for the outputs).

        Raises:
            ValueError: actions not of shape ``[B]`` or outside ``[0, n)``.
        """
        acts = np.asarray(actions).reshape(-1)
        n = len(self._action_set)
        if acts.shape != (self.num_envs,) or acts.min() < 0 or acts.max() >= n:
            raise ValueError(f"actions must be ints in [0, {n}) of shape ({self.num_envs},)")
        ram_before = np.zeros((self.num_envs, RAM_SIZE), dtype=np.uint8)
        ram_after = np.zeros((self.num_envs, RAM_SIZE), dtype=np.uint8)
        game_reward = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        stepped = np.zeros(self.num_envs, dtype=bool)
        for i in range(self.num_envs):
            if self._episode_over[i]:  # NEXT_STEP autoreset: this step only resets env i
                self._reset_one(i, None)
                continue
            stepped[i] = True
            ale = self.ales[i]
            ale.getRAM(ram_before[i])
            action = self._action_set[int(acts[i])]
            lives0 = int(self._lives[i])
            reward = 0
            game_over = lost = False
            for skip in range(FRAME_SKIP, 0, -1):
                reward += ale.act(action)
                game_over = ale.game_over()
                self._elapsed[i] += 1
                lives = ale.lives()
                lost = 0 < lives < lives0
                if game_over or self._elapsed[i] >= self._max_frames:
                    break
                if skip <= 2:
                    self._grab(i, skip - 1)
            ale.getRAM(ram_after[i])
            self._lives[i] = ale.lives()
            game_reward[i] = reward
            terminated[i] = game_over or (self._life_loss and lost)
            truncated[i] = self._elapsed[i] >= self._max_frames and not terminated[i]
            self._episode_over[i] = game_over or self._elapsed[i] >= self._max_frames
        obs = self._observe()
        if self.reward_fn is None:
            reward_out = game_reward.copy()
        else:
            reward_out = np.where(
                stepped, self.reward_fn(ram_before, ram_after, game_reward), 0.0
            ).astype(np.float64)
        return obs, reward_out, terminated, truncated, self._info(game_reward)

    def close(self, **kwargs: Any) -> None:
        """Release the emulators."""
        self.ales = []
