"""Atari suite through ale_py's native vector env (`ale_py.AtariVectorEnv`).

Preprocessing (Mnih et al. 2015; Machado et al. 2018): frame skip 4 with max-pooling of the
last two frames, 84x84 grayscale, up to 30 no-op actions at reset, FIRE on reset where the game
needs it, no reward clipping (the learner uses value rescaling instead), one frame per step
(``stack_num=1``; the agent stacks frames). Observations are uint8 ``[B, 1, 84, 84]``.
"""

from __future__ import annotations

from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from rltransfer.envs.spec import atari_game, require


def make_atari_vector_env(
    env_id: str,
    num_envs: int,
    *,
    sticky_action_prob: float,
    terminal_on_life_loss: bool,
    max_episode_frames: int,
) -> VectorEnv:
    """Build the ALE vector env for ``env_id`` (e.g. ``ALE/Pong-v5`` -> ROM ``pong``).

    Args:
        env_id: an ``ALE/<Game>-v5`` id.
        num_envs: number of emulators B.
        sticky_action_prob: ALE ``repeat_action_probability`` (0.25 is the v5 default).
        terminal_on_life_loss: report ``terminated=True`` when a life is lost. The game is
            NOT restarted then (ALE ``life_loss_info``): the next step continues the same
            game, as in DQN's training convention; the full reset happens at game over
            (``info["lives"] == 0`` on a terminated step).
        max_episode_frames: truncate a game after this many emulator frames (108,000 = 30 min).

    Returns:
        A NEXT_STEP-autoreset `VectorEnv`: obs uint8 ``[B, 1, 84, 84]``, int32 rewards,
        info with ``lives``, ``frame_number``, ``episode_frame_number``, ``env_id``.

    Raises:
        UnknownEnvError: not an ALE v5 id; ImportError: ale_py is not installed.
    """
    game, _ = atari_game(env_id)
    ale_py = require("atari")
    env: VectorEnv = ale_py.AtariVectorEnv(
        game,
        num_envs,
        max_num_frames_per_episode=int(max_episode_frames),
        repeat_action_probability=float(sticky_action_prob),
        full_action_space=False,
        autoreset_mode=AutoresetMode.NEXT_STEP,
        img_height=84,
        img_width=84,
        grayscale=True,
        stack_num=1,
        frameskip=4,
        maxpool=True,
        noop_max=30,
        episodic_life=False,
        life_loss_info=bool(terminal_on_life_loss),
        reward_clipping=False,
        use_fire_reset=True,
    )
    # With stack_num=1 and grayscale ale_py reports (1, 84, 84): already channels first.
    single = env.single_observation_space
    if not isinstance(single, spaces.Box) or single.shape != (1, 84, 84):
        raise RuntimeError(
            f"ale_py returned observation space {single}, expected Box uint8 (1, 84, 84); "
            "this ale_py version is not supported (need ale-py>=0.10)"
        )
    return env
