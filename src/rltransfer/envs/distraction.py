"""Distracting backgrounds for DeepMind Control pixel environments.

A video (or a procedurally generated moving texture) replaces the background: every agent step
the current frame is written into the skybox cube map of the shared GL context (only the faces
the camera can see, with ``glTexSubImage2D``; ``mujoco.mjr_uploadTexture`` is the fallback), and
the floor plane is made partly transparent so that the video also shows through the ground (the
Distracting Control Suite, Stone et al. 2021, likewise uses a dynamic skybox background and a
see-through ground plane with DAVIS videos). The robot is drawn by the same single render pass
as without distraction, so its pixels are unchanged.

Why texture swapping rather than segmentation-mask compositing: compositing needs a second
(segmentation) render of every frame, which costs about as much as the RGB render itself
(measured by ``benchmarks/dmc_throughput.py``), while rewriting one 168x168 cube face costs
about 0.1 ms. The skybox texture is shrunk to ``face_size`` pixels per cube face when the model
is loaded (`small_skybox_assets`; dm_control's is 800) and its mipmaps are turned off, so the
per-step update stays cheap. The camera sees about the central half of a face, so the central
part of each frame is what shows.

The clip (`rltransfer.envs.distraction_clips.load_frames`: ``"builtin"`` procedural textures, a
folder of frames, a ``.gif`` or a video) is loaded once and shared by all envs.

Playback is deterministic: every episode starts the clip at its first frame (as Kadavath et
al. 2021's public code does) and advances one frame per agent step, playing the clip forwards
then backwards (ping-pong) so that the background never jumps. The clip depends only on the
source and, for ``"builtin"``, on the distraction seed, never on the env seed: pretraining,
training and evaluation of one run pass the same distraction seed and see the same background
at the same step of an episode.
"""

from __future__ import annotations

import ctypes
import re
from typing import Any

import numpy as np

from rltransfer.envs.distraction_clips import DistractionError

DEFAULT_GROUND_ALPHA = 0.3
"""Opacity of textured floor planes under distraction (0 = invisible, 1 = opaque)."""


def small_skybox_assets(assets: dict[str, Any], face_size: int) -> dict[str, Any]:
    """Return a copy of a dm_control suite assets dict whose skybox texture is ``face_size``
    pixels per cube face (the suite's own is 800, too large to rewrite every step).

    Raises:
        DistractionError: no asset defines a ``type="skybox"`` texture.
    """
    out = dict(assets)
    pattern = re.compile(r"<texture\b[^>]*type=\"skybox\"[^>]*>", re.DOTALL)
    found = False
    for key, value in assets.items():
        text = value.decode() if isinstance(value, bytes) else value
        if not isinstance(text, str) or pattern.search(text) is None:
            continue

        def shrink(match: re.Match[str]) -> str:
            tag = re.sub(r'\bwidth="\d+"', f'width="{int(face_size)}"', match.group(0))
            return re.sub(r'\bheight="\d+"', f'height="{int(face_size)}"', tag)

        new = pattern.sub(shrink, text)
        out[key] = new.encode() if isinstance(value, bytes) else new
        found = True
    if not found:
        raise DistractionError("the model's assets define no skybox texture to replace")
    return out


class VideoBackground:
    """Per-env playback of a distraction clip into the skybox texture of MuJoCo models.

    Args:
        frames: uint8 ``[T, S, S, 3]`` clip (from
            `rltransfer.envs.distraction_clips.load_frames`); shared read-only by all envs.
        num_envs: B.
        ground_alpha: opacity given to textured floor planes (`prepare_model`).

    Playback: env ``i`` shows frame ``index(offset_i + t_i)`` where ``t_i`` is the number of
    agent steps since its last `reset_env`, ``offset_i`` is 0 (the clip's first frame, as in
    Kadavath et al. 2021's public code) unless `reset_env` is given a generator (then uniform
    in ``[0, 2T - 2)``), and ``index`` plays forwards then backwards (period ``2T - 2``; a
    one-frame clip is static).

    Upload (`upload`): only the cube faces that the camera can sample are rewritten
    (`visible_faces`), as RGBA rows with ``glTexSubImage2D`` on level 0 (``attach`` turns the
    skybox's mipmapping off); the face images are precomputed at construction (see
    `face_images` for their orientation). Set ``upload_all_faces = True`` to rewrite all six.

    Raises:
        DistractionError: frames of the wrong shape/dtype, ground_alpha outside [0, 1].
    """

    SEAM_MARGIN = 0.05
    """A face counts as visible for a ray within this relative margin of its border, so that
    bilinear filtering across cube seams never reads a face that was not rewritten."""

    def __init__(self, frames: np.ndarray, num_envs: int, *, ground_alpha: float) -> None:
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise DistractionError(
                f"frames must be uint8 [T, S, S, 3], got {frames.dtype} {frames.shape}"
            )
        if frames.shape[1] != frames.shape[2] or len(frames) < 1:
            raise DistractionError(f"frames must be square and non-empty, got {frames.shape}")
        if not 0.0 <= float(ground_alpha) <= 1.0:
            raise DistractionError(f"ground_alpha must be in [0, 1], got {ground_alpha}")
        self.frames = frames
        self.face_size = int(frames.shape[1])
        self.ground_alpha = float(ground_alpha)
        self.period = max(2 * len(frames) - 2, 1)
        self.offsets = np.zeros(int(num_envs), dtype=np.int64)
        self.steps = np.zeros(int(num_envs), dtype=np.int64)
        self.upload_all_faces = False
        # RGBA uploads are ~1.5x faster than RGB on Mesa; flips precomputed (a strided copy
        # per step costs more than the upload itself)
        rgba = np.empty((*frames.shape[:3], 4), dtype=np.uint8)
        rgba[..., 3] = 255
        rgba[..., :3] = frames[:, :, ::-1]
        self._mirrored = rgba
        self._upside_down = np.ascontiguousarray(rgba[:, ::-1, ::-1])
        self._skybox_texid = -1
        self._gl: tuple[Any, Any] | None = None
        self._gl_texture = 0
        self._camera: tuple[int, int, int] = (0, 1, 1)
        self._faces_cache: dict[bytes, tuple[int, ...]] = {}

    def prepare_model(self, model: Any) -> None:
        """Check that ``model`` (an ``mujoco.MjModel``) has a ``face_size`` skybox texture and
        set the alpha of every plane geom's textured material to ``ground_alpha``.

        Raises:
            DistractionError: no skybox texture, or one of another size (load the model with
                `small_skybox_assets`).
        """
        import mujoco

        skybox = int(mujoco.mjtTexture.mjTEXTURE_SKYBOX)
        ids = [k for k in range(model.ntex) if int(model.tex_type[k]) == skybox]
        if not ids:
            raise DistractionError("the model has no skybox texture to show the distraction on")
        texid = ids[0]
        shape = (int(model.tex_width[texid]), int(model.tex_height[texid]))
        if shape != (self.face_size, 6 * self.face_size) or int(model.tex_nchannel[texid]) != 3:
            raise DistractionError(
                f"skybox texture is {shape} with {model.tex_nchannel[texid]} channels, expected "
                f"({self.face_size}, {6 * self.face_size}) RGB; load the model with "
                "small_skybox_assets(assets, face_size)"
            )
        self._skybox_texid = texid
        plane = int(mujoco.mjtGeom.mjGEOM_PLANE)
        for g in np.flatnonzero(model.geom_type == plane):
            mat = int(model.geom_matid[g])
            if mat >= 0 and bool((model.mat_texid[mat] >= 0).any()):
                model.mat_rgba[mat, 3] = self.ground_alpha

    def reset_env(self, i: int, rng: np.random.Generator | None = None) -> None:
        """Start env ``i``'s clip at its first frame, or at a random frame drawn from ``rng``
        when one is given."""
        self.offsets[i] = 0 if rng is None else int(rng.integers(self.period))
        self.steps[i] = 0

    def advance(self, i: int) -> None:
        """Advance env ``i`` by one agent step (one clip frame)."""
        self.steps[i] += 1

    def frame_index(self, i: int) -> int:
        """Index into ``frames`` of env ``i``'s current frame (ping-pong playback)."""
        p = int((self.offsets[i] + self.steps[i]) % self.period)
        return p if p < len(self.frames) else self.period - p

    def attach(
        self, model: Any, context: Any, *, camera_id: int, height: int, width: int
    ) -> None:
        """Prepare texture updates in ``context`` (an ``mujoco.MjrContext`` made from a model
        prepared with `prepare_model`, its GL context current) for images of ``height x width``
        from fixed camera ``camera_id``.

        The skybox cube map's minification filter is set to plain bilinear, so that updating
        level 0 suffices (``mjr_uploadTexture`` also rebuilds the mipmaps: about 6 ms per
        upload on a software renderer). Without PyOpenGL the ``mjr_uploadTexture`` path is used.
        """
        if self._skybox_texid < 0:
            raise DistractionError("call prepare_model(model) before attach(model, context)")
        self._camera = (int(camera_id), int(height), int(width))
        try:
            from OpenGL import GL
            from OpenGL.raw.GL.VERSION import GL_1_1 as gl_raw
        except ImportError:  # pragma: no cover - PyOpenGL ships with mujoco's EGL/OSMesa backends
            self._gl = None
            return
        self._gl = (GL, gl_raw)
        self._gl_texture = int(context.texture[self._skybox_texid])
        GL.glBindTexture(GL.GL_TEXTURE_CUBE_MAP, self._gl_texture)
        GL.glTexParameteri(GL.GL_TEXTURE_CUBE_MAP, GL.GL_TEXTURE_MIN_FILTER, GL.GL_LINEAR)
        GL.glBindTexture(GL.GL_TEXTURE_CUBE_MAP, 0)

    def face_images(self, i: int) -> list[np.ndarray]:
        """The six cube-face images (uint8 RGBA ``[S, S, 4]``, C-contiguous) showing env ``i``'s
        current frame, in OpenGL face order +X, -X, +Y, -Y, +Z, -Z.

        MuJoCo maps world ``(x, y, z)`` (z up) to cube-map ``(x, z, -y)``; seen from inside, the
        side faces (and the top) appear mirrored left-right and the bottom face (seen by
        top-down cameras such as reacher's) upside down, so the frame is flipped accordingly
        and appears upright and unmirrored to cameras whose image "up" is world +z (side
        views) or world +y (top-down views).
        """
        k = self.frame_index(i)
        mirrored, upside_down = self._mirrored[k], self._upside_down[k]
        return [mirrored, mirrored, mirrored, upside_down, mirrored, mirrored]

    def visible_faces(self, cam_xmat: np.ndarray, fovy_deg: float) -> tuple[int, ...]:
        """Cube faces (OpenGL order, see `face_images`) that a ``height x width`` image from a
        camera with world orientation ``cam_xmat`` (row-major 3x3, columns = camera axes) and
        vertical field of view ``fovy_deg`` samples.

        A face is visible iff a pixel-centre ray of the image border falls in it (within
        `SEAM_MARGIN` of its edge) or one of its corners projects inside the image: a face region
        meeting the image either crosses its border or lies inside it. Cached per orientation.
        """
        _, height, width = self._camera
        xmat = np.asarray(cam_xmat, dtype=np.float64).reshape(3, 3)
        key = np.round(xmat, 9).tobytes() + np.float64(fovy_deg).tobytes()
        cached = self._faces_cache.get(key)
        if cached is not None:
            return cached
        tan_y = np.tan(np.deg2rad(float(fovy_deg)) / 2.0)
        tan_x = tan_y * width / height
        xs = ((np.arange(width) + 0.5) * 2.0 / width - 1.0) * tan_x
        ys = (1.0 - (np.arange(height) + 0.5) * 2.0 / height) * tan_y
        border = np.concatenate(
            [
                np.stack([xs, np.full(width, ys[0])], 1),
                np.stack([xs, np.full(width, ys[-1])], 1),
                np.stack([np.full(height, xs[0]), ys], 1),
                np.stack([np.full(height, xs[-1]), ys], 1),
            ]
        )
        rays_cam = np.concatenate([border, -np.ones((len(border), 1))], 1)  # looks along -z
        world = rays_cam @ xmat.T
        gl = np.stack([world[:, 0], world[:, 2], -world[:, 1]], 1)
        mag = np.abs(gl)
        near = mag >= (1.0 - self.SEAM_MARGIN) * mag.max(axis=1, keepdims=True)
        faces = {2 * a + int(neg) for a in range(3) for neg in (False, True)
                 if bool((near[:, a] & ((gl[:, a] < 0) == neg)).any())}
        corners_gl = np.array(
            [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float64
        )
        corners_world = np.stack([corners_gl[:, 0], -corners_gl[:, 2], corners_gl[:, 1]], 1)
        cam = corners_world @ xmat  # world -> camera coordinates
        ahead = cam[:, 2] < 0
        depth = np.where(ahead, -cam[:, 2], 1.0)
        inside = (
            ahead
            & (np.abs(cam[:, 0] / depth) <= tan_x)
            & (np.abs(cam[:, 1] / depth) <= tan_y)
        )
        for corner in corners_gl[inside]:
            faces.update(2 * a + int(corner[a] < 0) for a in range(3))
        out = tuple(sorted(faces))
        self._faces_cache[key] = out
        return out

    def upload(self, i: int, model: Any, data: Any, context: Any) -> None:
        """Show env ``i``'s current frame on the skybox of ``context`` (GL context current)
        for a render of ``model``/``data`` (an ``mujoco.MjModel``/``MjData``).

        Uses ``glTexSubImage2D`` on the `visible_faces` after `attach`; otherwise writes the
        faces into ``model.tex_data`` and calls ``mujoco.mjr_uploadTexture``.
        """
        faces = self.face_images(i)
        gl = self._gl
        if gl is not None:
            GL, gl_raw = gl
            camera_id = self._camera[0]
            ids: Any = range(6)
            if not self.upload_all_faces:
                ids = self.visible_faces(data.cam_xmat[camera_id], model.cam_fovy[camera_id])
            s = self.face_size
            gl_raw.glBindTexture(GL.GL_TEXTURE_CUBE_MAP, self._gl_texture)
            gl_raw.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
            for k in ids:
                gl_raw.glTexSubImage2D(
                    GL.GL_TEXTURE_CUBE_MAP_POSITIVE_X + k,
                    0,
                    0,
                    0,
                    s,
                    s,
                    GL.GL_RGBA,
                    GL.GL_UNSIGNED_BYTE,
                    faces[k].ctypes.data_as(ctypes.c_void_p),
                )
            gl_raw.glBindTexture(GL.GL_TEXTURE_CUBE_MAP, 0)
            return
        import mujoco

        s = self.face_size
        adr = int(model.tex_adr[self._skybox_texid])
        texture = model.tex_data[adr : adr + 6 * s * s * 3].reshape(6, s, s, 3)
        for k, face in enumerate(faces):
            texture[k] = face[..., :3]
        mujoco.mjr_uploadTexture(model, context, self._skybox_texid)


__all__ = ["DEFAULT_GROUND_ALPHA", "VideoBackground", "small_skybox_assets"]
