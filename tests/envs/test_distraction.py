"""Distracting backgrounds: frame sources, playback, seeding, and that only the background
pixels change (the robot's pixels are identical to the undistracted render)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rltransfer.envs.distraction import VideoBackground, small_skybox_assets
from rltransfer.envs.distraction_clips import DistractionError, builtin_frames, load_frames


def _solid(colour: tuple[int, int, int], size: tuple[int, int] = (20, 30)) -> Image.Image:
    return Image.fromarray(np.full((size[1], size[0], 3), colour, dtype=np.uint8))


def test_builtin_frames_seeded_and_moving() -> None:
    a = builtin_frames(32, 8, seed=1)
    b = builtin_frames(32, 8, seed=1)
    c = builtin_frames(32, 8, seed=2)
    assert a.shape == (8, 32, 32, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # consecutive frames differ (moving) but only gradually (no cut between frames)
    step = np.abs(a[1:].astype(int) - a[:-1].astype(int)).mean(axis=(1, 2, 3))
    assert (step > 0.5).all() and (step < 40).all()
    assert a.std() > 20  # textured, not flat
    np.testing.assert_array_equal(load_frames("builtin", 32, seed=1, num_builtin_frames=8), a)


def test_folder_of_frames_sorted_resized(tmp_path: Path) -> None:
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    # written out of order and with different sizes; names decide the order
    _solid(colours[2]).save(tmp_path / "frame_002.png")
    _solid(colours[0], (50, 10)).save(tmp_path / "frame_000.png")
    _solid(colours[1]).save(tmp_path / "frame_001.jpg", quality=100)
    (tmp_path / "notes.txt").write_text("not a frame")
    frames = load_frames(tmp_path, 16)
    assert frames.shape == (3, 16, 16, 3) and frames.dtype == np.uint8
    np.testing.assert_array_equal(frames[0], np.full((16, 16, 3), colours[0]))
    np.testing.assert_array_equal(frames[2], np.full((16, 16, 3), colours[2]))
    assert np.abs(frames[1].astype(int) - np.array(colours[1])).max() <= 3  # jpeg
    assert load_frames(tmp_path, 16, max_frames=2).shape[0] == 2


def test_gif_frames(tmp_path: Path) -> None:
    images = [_solid((10 * k, 0, 0)) for k in range(1, 5)]
    images[0].save(tmp_path / "clip.gif", save_all=True, append_images=images[1:], duration=40)
    frames = load_frames(tmp_path / "clip.gif", 8)
    assert frames.shape == (4, 8, 8, 3)
    np.testing.assert_array_equal(frames[:, 0, 0, 0], [10, 20, 30, 40])


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DistractionError, match="does not exist"):
        load_frames(tmp_path / "missing", 16)
    with pytest.raises(DistractionError, match=r"no image frames.*ffmpeg"):
        load_frames(tmp_path, 16)
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(DistractionError, match="cannot use"):
        load_frames(tmp_path / "x.txt", 16)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    try:
        import imageio  # noqa: F401
    except ImportError:
        with pytest.raises(DistractionError, match=r"(?i)extract the frames to a folder"):
            load_frames(video, 16)
    else:
        with pytest.raises(DistractionError, match="cannot decode"):
            load_frames(video, 16)
    assert issubclass(DistractionError, ValueError)


def test_ping_pong_playback_and_seeded_offsets() -> None:
    frames = np.zeros((4, 2, 2, 3), np.uint8)
    bg = VideoBackground(frames, 2, ground_alpha=0.5)
    assert bg.period == 6
    indices = []
    for _ in range(8):
        indices.append(bg.frame_index(0))
        bg.advance(0)
    assert indices == [0, 1, 2, 3, 2, 1, 0, 1]  # forwards then backwards, no jump
    bg.reset_env(0)  # an episode starts the clip at its first frame
    assert bg.frame_index(0) == 0 and bg.steps[0] == 0
    bg.reset_env(1, np.random.default_rng(5))
    expected = int(np.random.default_rng(5).integers(6))
    assert bg.offsets[1] == expected and bg.steps[1] == 0
    static = VideoBackground(frames[:1], 1, ground_alpha=0.5)
    static.advance(0)
    assert static.frame_index(0) == 0
    with pytest.raises(DistractionError):
        VideoBackground(frames, 1, ground_alpha=1.5)


def test_small_skybox_assets() -> None:
    assets = {
        "./common/skybox.xml": b'<texture name="skybox" type="skybox" builtin="gradient" '
        b'width="800" height="800"/>',
        "./common/materials.xml": b'<texture name="grid" type="2d" width="300" height="300"/>',
    }
    out = small_skybox_assets(assets, 64)
    assert b'width="64" height="64"' in out["./common/skybox.xml"]
    assert out["./common/materials.xml"] == assets["./common/materials.xml"]
    with pytest.raises(DistractionError, match="no skybox"):
        small_skybox_assets({"a.xml": "<mujoco/>"}, 64)


# --- in the rendered environment --------------------------------------------------------


def _robot_mask(env: object) -> np.ndarray:
    """bool [H, W]: pixels showing a geom of a body other than the world body (the robot),
    from a segmentation render of env 0 with the same camera and tessellation."""
    import mujoco

    physics = env.physics[0]  # type: ignore[attr-defined]
    model, data = physics.model.ptr, physics.data.ptr
    h, w = env.render_size  # type: ignore[attr-defined]
    with mujoco.Renderer(model, h, w) as renderer:
        renderer.enable_segmentation_rendering()
        renderer.update_scene(data, camera=env.camera_id)  # type: ignore[attr-defined]
        seg = renderer.render()
    objid, objtype = seg[..., 0], seg[..., 1]
    is_geom = objtype == int(mujoco.mjtObj.mjOBJ_GEOM)
    body = np.where(is_geom, model.geom_bodyid[np.maximum(objid, 0)], 0)
    return is_geom & (body != 0)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["DMC/cheetah-run", "DMC/reacher-easy"])
def test_distraction_changes_background_not_robot(env_id: str) -> None:
    pytest.importorskip("dm_control")
    from rltransfer.envs.dmc import DMCVectorEnv

    plain = DMCVectorEnv(env_id, 1, seed=3)
    distracted = DMCVectorEnv(env_id, 1, seed=3, distraction="builtin")
    try:
        act_shape = plain.single_action_space.shape
        assert act_shape is not None
        acts = np.random.default_rng(0).uniform(-1, 1, (3, 1, act_shape[0]))
        obs_p, _ = plain.reset()
        obs_d, _ = distracted.reset()
        for t in range(len(acts) + 1):
            mask = _robot_mask(plain)
            assert mask.sum() > 20, "the robot must be in view"
            qpos_d, qpos_p = distracted.physics[0].data.qpos, plain.physics[0].data.qpos
            np.testing.assert_array_equal(qpos_d, qpos_p)
            p, d = obs_p[0].transpose(1, 2, 0), obs_d[0].transpose(1, 2, 0)
            np.testing.assert_array_equal(d[mask], p[mask])
            changed = (d[~mask] != p[~mask]).any(axis=-1).mean()
            assert changed > 0.5, f"only {changed:.2f} of the background changed"
            if t < len(acts):
                obs_p, r_p, *_ = plain.step(acts[t])
                obs_d, r_d, *_ = distracted.step(acts[t])
                np.testing.assert_array_equal(r_p, r_d)  # distraction never touches the task
    finally:
        plain.close()
        distracted.close()


@pytest.mark.slow
def test_distraction_deterministic_given_seed_and_moving() -> None:
    pytest.importorskip("dm_control")
    from rltransfer.envs import make_env

    def rollout(seed: int, distraction_seed: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        env = make_env("DMC/reacher-easy", 2, seed=seed, distraction="builtin",
                       distraction_seed=distraction_seed)
        try:
            background = env.unwrapped._background  # type: ignore[attr-defined]
            obs, _ = env.reset()
            frames, index = [obs], [background.frame_index(0)]
            for _ in range(3):
                obs, *_ = env.step(np.zeros((2, 2), np.float32))
                frames.append(obs)
                index.append(background.frame_index(0))
            return np.stack(frames), background.frames, index
        finally:
            env.close()

    a, clip_a, index_a = rollout(4, 1)
    b, _, _ = rollout(4, 1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[1], a[2])  # the background moves every agent step
    assert index_a == [0, 1, 2, 3]  # every episode plays the clip from its first frame
    # the clip depends on the distraction seed only, not on the env seed
    _, clip_c, index_c = rollout(5, 1)
    np.testing.assert_array_equal(clip_c, clip_a)
    assert index_c == index_a
    _, clip_d, _ = rollout(4, 2)
    assert not np.array_equal(clip_d, clip_a)
    np.testing.assert_array_equal(clip_a, builtin_frames(168, 128, seed=1))  # 2 x 84 faces


def _equal_fraction(x: np.ndarray, y: np.ndarray) -> float:
    """Share of pixels with all channels equal, of uint8 [C, H, W] frames."""
    return float((x == y).all(axis=0).mean())


@pytest.mark.slow
def test_ik_rl_and_eval_envs_show_the_same_background() -> None:
    """The three stages of one run, each built the way its own code builds it, with different
    env seeds and one distraction seed: same clip, same background at the same step (only
    the reacher arm and target, placed by the env seed, differ); another distraction seed
    shows another clip."""
    pytest.importorskip("dm_control")
    from rltransfer.agents.sac.config import SACTrainConfig, sac_env_kwargs
    from rltransfer.agents.sac.train import default_env_factory
    from rltransfer.evaluation.protocol import eval_env_kwargs
    from rltransfer.methods.encoder_pretraining.inverse_dynamics import (
        InverseDynamicsConfig,
        _make_env_for,
    )
    from rltransfer.methods.encoder_pretraining.inverse_dynamics_data import (
        collect_random_transitions,
    )

    env_id, steps = "DMC/reacher-easy", 3
    ik_cfg = InverseDynamicsConfig(env_id=env_id, seed=0, render_size=100, crop_size=None,
                                   distraction="builtin", distraction_seed=7)
    sac_cfg = SACTrainConfig(env_id=env_id, seed=3, render_size=100, distraction="builtin",
                             distraction_seed=7)
    ik_env = _make_env_for(ik_cfg)
    try:
        ik_clip = ik_env.unwrapped._background.frames  # type: ignore[attr-defined]
        data = collect_random_transitions(ik_env, steps, frame_stack=1)
        ik_frames = data.frames[: steps + 1]  # the reset frame, then one per step (1 env)
    finally:
        ik_env.close()

    def run(make: object, seed: int) -> tuple[np.ndarray, np.ndarray]:
        env = make(1, seed)  # type: ignore[operator]
        try:
            clip = env.unwrapped._background.frames
            obs, _ = env.reset()
            frames = [obs[0]]
            for _ in range(steps):
                obs, *_ = env.step(np.zeros((1, 2), np.float32))
                frames.append(obs[0])
            return np.stack(frames), clip
        finally:
            env.close()

    rl_frames, rl_clip = run(default_env_factory(sac_cfg), 3)
    eval_factory = default_env_factory(sac_cfg, eval_env_kwargs(sac_env_kwargs(sac_cfg)))
    eval_frames, eval_clip = run(eval_factory, 1_000_003)
    other = SACTrainConfig(env_id=env_id, seed=3, render_size=100, distraction="builtin",
                           distraction_seed=8)
    other_frames, other_clip = run(default_env_factory(other), 3)
    np.testing.assert_array_equal(rl_clip, ik_clip)
    np.testing.assert_array_equal(eval_clip, ik_clip)
    assert not np.array_equal(other_clip, ik_clip)
    for t in range(steps + 1):
        # measured: 0.94 of the pixels agree with one clip, 0.11 with two clips
        assert _equal_fraction(ik_frames[t], rl_frames[t]) > 0.8
        assert _equal_fraction(ik_frames[t], eval_frames[t]) > 0.8
        assert _equal_fraction(rl_frames[t], other_frames[t]) < 0.3


def test_folder_distraction_in_env(tmp_path: Path) -> None:
    """One pure-red frame: the sky above the cheetah shows exactly that colour."""
    pytest.importorskip("dm_control")
    from rltransfer.envs import make_env

    _solid((255, 0, 0), (40, 40)).save(tmp_path / "0000.png")
    env = make_env("DMC/cheetah-run", 1, seed=0, distraction=tmp_path)
    try:
        obs, _ = env.reset()
        top = obs[0, :, :10].reshape(3, -1).T  # upper rows: sky only
        assert (top == np.array([255, 0, 0])).all(axis=-1).mean() > 0.9
    finally:
        env.close()
    with pytest.raises(DistractionError, match="does not exist"):
        make_env("DMC/cheetah-run", 1, seed=0, distraction=tmp_path / "nope")


def test_frame_appears_upright_and_unmirrored(tmp_path: Path) -> None:
    """Left half red, right half blue: the cheetah's sky shows red on the left, blue on the
    right (cube faces flipped so that the clip is not mirrored)."""
    pytest.importorskip("dm_control")
    from rltransfer.envs.dmc import DMCVectorEnv

    frame = np.zeros((64, 64, 3), np.uint8)
    frame[:, :32, 0] = 255
    frame[:, 32:, 2] = 255
    Image.fromarray(frame).save(tmp_path / "0.png")
    env = DMCVectorEnv("DMC/cheetah-run", 1, seed=0, distraction=tmp_path)
    try:
        obs, _ = env.reset()
        sky = obs[0, :, :8].transpose(1, 2, 0)  # [8, W, 3]
        assert (sky[:, :20] == [255, 0, 0]).all(axis=-1).mean() > 0.9
        assert (sky[:, -20:] == [0, 0, 255]).all(axis=-1).mean() > 0.9
    finally:
        env.close()


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["DMC/cheetah-run", "DMC/walker-walk", "DMC/reacher-easy"])
def test_visible_face_upload_matches_full_upload(env_id: str) -> None:
    """Rewriting only the faces the camera can see gives the same pixels as rewriting all six,
    even though the other faces hold another env's frame (the shared context)."""
    pytest.importorskip("dm_control")
    from rltransfer.envs.dmc import DMCVectorEnv

    env = DMCVectorEnv(env_id, 3, seed=2, distraction="builtin")
    try:
        env.reset()
        background = env._background
        assert background is not None
        physics, cam = env.physics[0], env.camera_id
        visible = background.visible_faces(physics.data.cam_xmat[cam], physics.model.cam_fovy[cam])
        assert 1 <= len(visible) < 6
        act_shape = env.single_action_space.shape
        assert act_shape is not None
        acts = np.random.default_rng(0).uniform(-1, 1, (4, 3, act_shape[0]))
        for a in acts:
            culled, *_ = env.step(a)
            background.upload_all_faces = True
            full = env._observe()
            background.upload_all_faces = False
            np.testing.assert_array_equal(culled, full)
    finally:
        env.close()
