"""Environment ids, suites and their static properties (`EnvSpec`).

Three suites are supported, each behind an optional dependency (``pip install
rltransfer[extra]``): Atari (``ALE/<Game>-v5``, extra ``atari``), MinAtar
(``MinAtar/<Game>-v0|v1``, extra ``minatar``), MiniGrid (``MiniGrid-*``, extra
``minigrid``) and DeepMind Control pixels (``DMC/<domain>-<task>``, extra ``dmc``; see
`rltransfer.envs.dmc`). Nothing here imports an optional dependency at module import time.
"""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from types import ModuleType

from rltransfer.errors import MissingDependencyError, UserError

SUITES: tuple[str, ...] = ("atari", "minatar", "minigrid", "dmc")
"""Names of the supported environment suites."""

_SUITE_EXTRA = {"atari": "atari", "minatar": "minatar", "minigrid": "minigrid", "dmc": "dmc"}
_SUITE_MODULE = {
    "atari": "ale_py", "minatar": "minatar", "minigrid": "minigrid", "dmc": "dm_control"
}

MINATAR_GAMES: dict[str, str] = {
    "Asterix": "asterix",
    "Breakout": "breakout",
    "Freeway": "freeway",
    "Seaquest": "seaquest",
    "SpaceInvaders": "space_invaders",
}
"""MinAtar id name -> ``minatar.Environment`` game name."""

_MINATAR_ID = re.compile(r"^MinAtar/(?P<name>[A-Za-z]+)-v(?P<version>[01])$")

MINIGRID_TASKS: tuple[str, ...] = ("goal", "key", "door")
"""MiniGrid task variants (reward functions) in the order they are listed by `env_spec`."""


class UnknownEnvError(UserError):
    """Raised for an environment id that belongs to no supported suite or is not registered."""


class EnvOptionError(UserError):
    """An environment option that is out of range or does not apply to the env's suite, or a
    task the env does not have."""


def _unknown(env_id: str, detail: str = "") -> UnknownEnvError:
    extra = f" ({detail})" if detail else ""
    return UnknownEnvError(
        f"Unknown environment id {env_id!r}{extra}. Known suites: "
        "atari (e.g. 'ALE/Pong-v5', 'ALE/MsPacman-v5'), "
        "minatar (e.g. 'MinAtar/Breakout-v1', 'MinAtar/SpaceInvaders-v1'), "
        "minigrid (e.g. 'MiniGrid-DoorKey-5x5-v0', 'MiniGrid-Empty-8x8-v0'), "
        "dmc (e.g. 'DMC/cheetah-run', 'DMC/reacher-easy', 'DMC/walker-walk')."
    )


def require(suite: str) -> ModuleType:
    """Import the optional dependency of ``suite`` and return it.

    Raises:
        MissingDependencyError: the package is missing (an ``ImportError``); the message
            names the ``pip install 'rltransfer[<extra>]'`` command that installs it.
    """
    module = _SUITE_MODULE[suite]
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"The {suite} suite needs the {module!r} package. "
            f"Install it with: pip install 'rltransfer[{_SUITE_EXTRA[suite]}]'"
        ) from err


def suite_of(env_id: str) -> str:
    """Return the suite name (one of `SUITES`) of ``env_id`` from its prefix.

    Raises:
        UnknownEnvError: the id has no known prefix (``ALE/``, ``MinAtar/``, ``MiniGrid-``).
    """
    if not isinstance(env_id, str):
        raise UnknownEnvError(f"env_id must be a string, got {type(env_id).__name__}")
    if env_id.startswith("ALE/"):
        return "atari"
    if env_id.startswith("MinAtar/"):
        return "minatar"
    if env_id.startswith("DMC/"):
        return "dmc"
    if env_id.startswith("MiniGrid-"):
        return "minigrid"
    raise _unknown(env_id)


@dataclass(frozen=True)
class EnvSpec:
    """Static properties of an environment id.

    Attributes:
        env_id: the id as given to `make_env`.
        suite: ``"atari"``, ``"minatar"``, ``"minigrid"`` or ``"dmc"``.
        frame_stack: default number of frames the agent stacks (4 for Atari as in DQN/R2D2,
            3 RGB frames for DMC as in DrQ / Kadavath et al. 2021, 1 otherwise: MinAtar and
            MiniGrid states are Markov enough without stacking).
        obs_scale: divide the uint8 observation by this to get roughly [0, 1]
            (255 for Atari pixels, 1 for MinAtar 0/1 channels, 10 for MiniGrid encodings,
            whose largest object index is 10).
        tasks: names of the task variants (reward functions) accepted by `make_env(task=...)`;
            the first is the default.
        frames_per_env_step: emulator frames per env step (4 for Atari's action repeat,
            the default action repeat for DMC: 4 for cheetah/reacher/walker, 8 cartpole,
            2 finger; 1 otherwise); multiply env steps by this to get frames.
        default_sticky_action_prob: probability that the previous action is repeated
            instead of the chosen one when `make_env(sticky_action_prob=None)`: 0.25 for
            ALE v5 (Machado et al. 2018), 0.1 for MinAtar (Young & Tian 2019), 0 for MiniGrid.
        game: the suite's internal game name (ALE ROM name, MinAtar game, DMC
            ``<domain>-<task>``), or the id itself.
    """

    env_id: str
    suite: str
    frame_stack: int
    obs_scale: float
    tasks: tuple[str, ...]
    frames_per_env_step: int
    default_sticky_action_prob: float
    game: str


def env_spec(env_id: str) -> EnvSpec:
    """Return the `EnvSpec` of ``env_id`` (cached).

    MiniGrid task availability is found by building the env once and resetting it with seed
    0: ``"key"`` is listed when the grid holds a key, ``"door"`` when it holds a door.

    Raises:
        UnknownEnvError: ``env_id`` is not a supported or registered id.
        ImportError: the suite's optional dependency is not installed.
    """
    return _env_spec_cached(env_id)


@functools.lru_cache(maxsize=128)
def _env_spec_cached(env_id: str) -> EnvSpec:
    suite = suite_of(env_id)
    if suite == "atari":
        from rltransfer.envs.atari_tasks import atari_tasks

        game, sticky = atari_game(env_id)
        return EnvSpec(env_id, "atari", 4, 255.0, atari_tasks(game), 4, sticky, game)
    if suite == "minatar":
        game, _ = minatar_game(env_id)
        return EnvSpec(env_id, "minatar", 1, 1.0, ("game",), 1, 0.1, game)
    if suite == "dmc":
        from rltransfer.envs.dmc import default_action_repeat, parse_dmc_id

        domain, task = parse_dmc_id(env_id)
        repeat = default_action_repeat(domain)
        return EnvSpec(env_id, "dmc", 3, 255.0, ("task",), repeat, 0.0, f"{domain}-{task}")
    from rltransfer.envs.minigrid import minigrid_available_tasks

    tasks = minigrid_available_tasks(env_id)
    return EnvSpec(env_id, "minigrid", 1, 10.0, tasks, 1, 0.0, env_id)


def atari_game(env_id: str) -> tuple[str, float]:
    """Map an ``ALE/<Game>-v5`` id to its ALE ROM name and default sticky-action probability.

    Uses ale_py's gymnasium registrations (e.g. ``ALE/MsPacman-v5`` -> ``ms_pacman``, 0.25).

    Raises:
        UnknownEnvError: not a registered ALE v5 id.
        ImportError: ale_py is not installed.
    """
    ale_py = require("atari")
    import gymnasium as gym

    gym.register_envs(ale_py)
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as err:
        raise _unknown(env_id, f"not a registered ALE game: {err}") from err
    if spec.version != 5 or "game" not in spec.kwargs:
        raise _unknown(env_id, "only ALE v5 ids such as 'ALE/Pong-v5' are supported")
    return str(spec.kwargs["game"]), float(spec.kwargs.get("repeat_action_probability", 0.25))


def minatar_game(env_id: str) -> tuple[str, bool]:
    """Map ``MinAtar/<Game>-v<0|1>`` to the MinAtar game name and whether the minimal action set
    is used (v1, as in minatar's own gymnasium registrations; v0 uses all 6 actions).

    Raises:
        UnknownEnvError: not a MinAtar id of this form or an unknown game.
    """
    match = _MINATAR_ID.match(env_id)
    if match is None or match["name"] not in MINATAR_GAMES:
        raise _unknown(
            env_id, f"MinAtar games are {sorted(MINATAR_GAMES)} with version -v0 or -v1"
        )
    return MINATAR_GAMES[match["name"]], match["version"] == "1"
