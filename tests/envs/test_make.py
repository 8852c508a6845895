"""make_env contract: shapes, dtypes, NEXT_STEP autoreset, reward-free, seeding, errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from gymnasium import spaces

from rltransfer.envs import EnvSpec, UnknownEnvError, env_spec, make_env
from rltransfer.envs.minatar import minatar_env_fn
from rltransfer.envs.minigrid import minigrid_env_fn

SUITE_CASES = [
    # env_id, expected single obs shape, frame_stack, obs_scale, frames_per_env_step
    ("MiniGrid-DoorKey-5x5-v0", (3, 5, 5), 1, 10.0, 1),
    ("MinAtar/Breakout-v1", (4, 10, 10), 1, 1.0, 1),
    ("ALE/Pong-v5", (1, 84, 84), 4, 255.0, 4),
]


@pytest.mark.parametrize(("env_id", "shape", "stack", "scale", "fps"), SUITE_CASES)
def test_shapes_dtypes_and_spec(
    env_id: str, shape: tuple[int, ...], stack: int, scale: float, fps: int
) -> None:
    spec = env_spec(env_id)
    assert isinstance(spec, EnvSpec)
    assert (spec.frame_stack, spec.obs_scale, spec.frames_per_env_step) == (stack, scale, fps)
    env = make_env(env_id, 2, seed=3)
    try:
        single = env.single_observation_space
        assert isinstance(single, spaces.Box)
        assert single.dtype == np.uint8 and single.shape == shape
        assert isinstance(env.observation_space, spaces.Box)
        assert env.observation_space.shape == (2, *shape)
        assert env.observation_space.dtype == np.uint8
        assert isinstance(env.single_action_space, spaces.Discrete)
        obs, info = env.reset()
        assert obs.dtype == np.uint8 and obs.shape == (2, *shape)
        assert info["task_reward"].dtype == np.float64 and info["task_reward"].shape == (2,)
        rng = np.random.default_rng(0)
        for _ in range(5):
            actions = rng.integers(0, env.single_action_space.n, size=2)
            obs, reward, terminated, truncated, info = env.step(actions)
            assert obs.dtype == np.uint8 and obs.shape == (2, *shape)
            assert reward.dtype == np.float64 and reward.shape == (2,)
            assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_
            assert isinstance(info, dict)
            assert info["task_reward"].dtype == np.float64
            np.testing.assert_array_equal(info["task_reward"], reward)
            assert env.observation_space.contains(obs)
    finally:
        env.close()


def test_minigrid_partial_obs_is_7x7() -> None:
    env = make_env("MiniGrid-DoorKey-8x8-v0", 1, seed=0, full_obs=False)
    obs, _ = env.reset()
    assert obs.shape == (1, 3, 7, 7) and obs.dtype == np.uint8
    full = make_env("MiniGrid-DoorKey-8x8-v0", 1, seed=0)
    fobs, _ = full.reset()
    assert fobs.shape == (1, 3, 8, 8)
    # The agent (object index 10) appears exactly once in the full grid, never in the ego view.
    assert int((fobs[0, 0] == 10).sum()) == 1
    assert int((obs[0, 0] == 10).sum()) == 0


def test_minigrid_full_grid_matches_fully_obs_wrapper() -> None:
    import gymnasium as gym
    from minigrid.wrappers import FullyObsWrapper, ImgObsWrapper

    from rltransfer.envs.minigrid import FullGridEncoding

    ours = FullGridEncoding(gym.make("MiniGrid-DoorKey-8x8-v0"))
    ref = ImgObsWrapper(FullyObsWrapper(gym.make("MiniGrid-DoorKey-8x8-v0")))
    a, _ = ours.reset(seed=7)
    b, _ = ref.reset(seed=7)
    assert a.shape == (3, 8, 8) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b.transpose(2, 1, 0))
    for action in np.random.default_rng(0).integers(0, 7, size=60):
        a, ra, ta, ua, _ = ours.step(int(action))
        b, rb, tb, ub, _ = ref.step(int(action))
        np.testing.assert_array_equal(a, b.transpose(2, 1, 0))
        assert (ra, ta, ua) == (rb, tb, ub)
        if ta or ua:
            break


def _drive_to_reset(env_fn, seed: int, actions: np.ndarray) -> np.ndarray:
    """Reference: one unvectorized env, reset(seed), the given steps, then reset()."""
    single = env_fn()
    single.reset(seed=seed)
    for a in actions:
        single.step(int(a))
    return single.reset()[0]


@pytest.mark.parametrize("env_id", ["MiniGrid-DoorKey-5x5-v0", "MinAtar/Breakout-v1"])
def test_next_step_autoreset_sync_suites(env_id: str) -> None:
    limit = 4
    seed = 11
    envs = [make_env(env_id, 2, seed=seed, max_episode_frames=limit) for _ in range(2)]
    for env in envs:
        env.reset()
    rng = np.random.default_rng(1)
    n = envs[0].single_action_space.n
    taken = []
    for t in range(limit):
        actions = rng.integers(0, n, size=2)
        taken.append(actions)
        outs = [env.step(actions) for env in envs]
        _, _, terminated, truncated, _ = outs[0]
        assert not terminated.any()
        assert truncated.all() == (t == limit - 1)
    # The autoreset step ignores the actions: different actions give identical observations.
    obs_a, rew_a, term_a, trunc_a, info_a = envs[0].step(np.zeros(2, dtype=np.int64))
    obs_b, _, _, _, _ = envs[1].step(np.full(2, n - 1, dtype=np.int64))
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rew_a, 0.0)
    np.testing.assert_array_equal(info_a["task_reward"], 0.0)
    assert not term_a.any() and not trunc_a.any()
    # ... and it is exactly the first observation of the env's next episode.
    if env_id.startswith("MiniGrid"):
        fn = minigrid_env_fn(env_id, task="goal", full_obs=True, max_episode_steps=limit)
    else:
        fn = minatar_env_fn(env_id, sticky_action_prob=0.1, max_episode_steps=limit)
    for i in range(2):
        expected = _drive_to_reset(fn, seed + i, np.array([a[i] for a in taken]))
        np.testing.assert_array_equal(obs_a[i], expected)


def test_next_step_autoreset_atari_truncation() -> None:
    env = make_env("ALE/Pong-v5", 2, seed=0, max_episode_frames=60)
    _, info = env.reset()
    done_step = None
    for t in range(40):
        _, _, terminated, truncated, info = env.step(np.zeros(2, dtype=np.int64))
        if truncated[0]:
            done_step = t
            break
        assert not terminated.any()
    assert done_step is not None, "60-frame limit never truncated"
    assert info["episode_frame_number"][0] >= 60
    _, reward, terminated, truncated, info = env.step(np.ones(2, dtype=np.int64))
    assert not terminated[0] and not truncated[0]
    assert reward[0] == 0.0 and info["task_reward"][0] == 0.0
    # A fresh game: the episode frame counter restarted (no-ops + FIRE reset only).
    assert info["episode_frame_number"][0] < 60


def test_atari_terminal_on_life_loss_continues_game() -> None:
    env = make_env("ALE/Breakout-v5", 1, seed=0, terminal_on_life_loss=True, sticky_action_prob=0)
    _, info = env.reset()
    lives0 = int(info["lives"][0])
    assert lives0 == 5
    for _ in range(400):
        _, _, terminated, _, info = env.step(np.zeros(1, dtype=np.int64))  # NOOP: ball is lost
        if terminated[0]:
            break
    assert terminated[0] and int(info["lives"][0]) == lives0 - 1
    frames_at_loss = int(info["episode_frame_number"][0])
    _, reward, terminated, truncated, info = env.step(np.zeros(1, dtype=np.int64))
    assert reward[0] == 0.0 and not terminated[0] and not truncated[0]
    # Same game continues: lives not restored, frame counter not restarted.
    assert int(info["lives"][0]) == lives0 - 1
    assert int(info["episode_frame_number"][0]) > frames_at_loss


def test_reward_free_hides_reward_keeps_task_reward() -> None:
    kwargs = {"task": "key", "max_episode_frames": 50}
    envs = [make_env("MiniGrid-DoorKey-5x5-v0", 1, seed=0, reward_free=rf, **kwargs)
            for rf in (False, True)]
    outs = []
    for env in envs:
        env.reset()
        inner = env.unwrapped.envs[0].unwrapped  # type: ignore[attr-defined]
        _face_object(inner, "key")
        outs.append(env.step(np.array([3])))  # pickup
    (_, r_task, term_task, _, i_task), (_, r_free, term_free, _, i_free) = outs
    assert r_task[0] == 1.0 and i_task["task_reward"][0] == 1.0
    assert r_free[0] == 0.0 and i_free["task_reward"][0] == 1.0
    assert term_task[0] and term_free[0]


def _face_object(u, type_name: str) -> None:
    """Teleport a MiniGrid agent onto an empty cell next to the first `type_name` object, facing
    it."""
    from minigrid.core.constants import DIR_TO_VEC

    for j in range(u.grid.height):
        for i in range(u.grid.width):
            obj = u.grid.get(i, j)
            if obj is not None and obj.type == type_name:
                for d, vec in enumerate(DIR_TO_VEC):
                    x, y = i - int(vec[0]), j - int(vec[1])
                    inside = 0 <= x < u.grid.width and 0 <= y < u.grid.height
                    if inside and u.grid.get(x, y) is None:
                        u.agent_pos = (x, y)
                        u.agent_dir = d
                        return
    raise AssertionError(f"no free cell next to a {type_name}")


def test_seed_determinism() -> None:
    for env_id in ("MiniGrid-DoorKey-8x8-v0", "MinAtar/Breakout-v1", "ALE/Pong-v5"):
        a = make_env(env_id, 3, seed=5)
        b = make_env(env_id, 3, seed=5)
        oa, _ = a.reset()
        ob, _ = b.reset()
        np.testing.assert_array_equal(oa, ob)
        rng = np.random.default_rng(0)
        for _ in range(10):
            act = rng.integers(0, a.single_action_space.n, size=3)
            sa, sb = a.step(act), b.step(act)
            np.testing.assert_array_equal(sa[0], sb[0])
            np.testing.assert_array_equal(sa[1], sb[1])
        a.close()
        b.close()


def test_env_i_is_seeded_with_seed_plus_i() -> None:
    # Env 1 of a seed-4 vector env equals env 0 of a seed-5 one.
    a = make_env("MiniGrid-DoorKey-8x8-v0", 2, seed=4)
    b = make_env("MiniGrid-DoorKey-8x8-v0", 1, seed=5)
    oa, _ = a.reset()
    ob, _ = b.reset()
    np.testing.assert_array_equal(oa[1], ob[0])
    # Different seeds give different layouts for at least one of 6 envs.
    c = make_env("MiniGrid-DoorKey-8x8-v0", 6, seed=100)
    oc, _ = c.reset()
    d = make_env("MiniGrid-DoorKey-8x8-v0", 6, seed=200)
    od, _ = d.reset()
    assert not np.array_equal(oc, od)


@pytest.mark.parametrize(
    "env_id", ["Foo-v0", "MiniGrid-NoSuchThing-v0", "ALE/NoSuchGame-v5", "MinAtar/Pong-v1"]
)
def test_unknown_env_id(env_id: str) -> None:
    with pytest.raises(UnknownEnvError) as excinfo:
        make_env(env_id, 1, seed=0)
    assert isinstance(excinfo.value, ValueError)
    message = str(excinfo.value)
    for word in ("atari", "minatar", "minigrid", "ALE/Pong-v5"):
        assert word in message


def test_unknown_task_lists_valid_tasks() -> None:
    with pytest.raises(ValueError, match=r"goal.*key.*door"):
        make_env("MiniGrid-DoorKey-5x5-v0", 1, seed=0, task="lava")
    with pytest.raises(ValueError, match="game"):
        make_env("MinAtar/Breakout-v1", 1, seed=0, task="goal")
    with pytest.raises(ValueError, match="key"):
        make_env("MiniGrid-Empty-5x5-v0", 1, seed=0, task="key")
    assert env_spec("MiniGrid-Empty-5x5-v0").tasks == ("goal",)
    assert env_spec("ALE/MsPacman-v5").game == "ms_pacman"


def test_inapplicable_options_rejected() -> None:
    with pytest.raises(ValueError, match="Atari"):
        make_env("MinAtar/Breakout-v1", 1, seed=0, terminal_on_life_loss=True)
    with pytest.raises(ValueError, match="MiniGrid"):
        make_env("MinAtar/Breakout-v1", 1, seed=0, full_obs=False)
    with pytest.raises(ValueError, match="num_envs"):
        make_env("MinAtar/Breakout-v1", 0, seed=0)
    with pytest.raises(ValueError, match="sticky"):
        make_env("MinAtar/Breakout-v1", 1, seed=0, sticky_action_prob=1.5)


def test_missing_dependency_names_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "minatar", None)
    with pytest.raises(ImportError, match=r"rltransfer\[minatar\]"):
        make_env("MinAtar/Asterix-v1", 1, seed=0)


def test_import_without_optional_dependencies() -> None:
    code = (
        "import sys\n"
        "for m in ('ale_py', 'minatar', 'minigrid'): sys.modules[m] = None\n"
        "import rltransfer.envs as e\n"
        "assert e.env_spec('MinAtar/Breakout-v1').suite == 'minatar'\n"
        "try:\n"
        "    e.make_env('ALE/Pong-v5', 1, 0)\n"
        "except ImportError as err:\n"
        "    assert 'rltransfer[atari]' in str(err)\n"
        "else:\n"
        "    raise SystemExit('no ImportError')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
