"""Distraction clips for DeepMind Control pixel environments: the moving backgrounds that
`rltransfer.envs.distraction.VideoBackground` shows on the skybox.

Sources (`load_frames`):

* ``"builtin"``: moving procedural textures (drifting coloured plane waves and moving discs),
  generated from a seed, no download;
* a folder of image frames (``.png``, ``.jpg``, ``.jpeg``; sorted by file name; read with PIL);
* an animated ``.gif`` (read with PIL);
* a video file (``.mp4``, ``.avi``, ``.mov``, ``.mkv``, ``.webm``) when ``imageio`` is installed;
  otherwise a `DistractionError` says to extract the frames to a folder.

The clip depends only on the source and, for ``"builtin"``, on the distraction seed, never on
the env seed: pretraining, training and evaluation of one run pass the same distraction seed
and see the same background at the same step of an episode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rltransfer.errors import UserError

BUILTIN = "builtin"
"""The ``distraction=`` value selecting the procedural moving textures."""

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
"""Image file suffixes read from a folder of frames (case-insensitive)."""

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
"""Video file suffixes read with imageio (when installed)."""


class DistractionError(UserError):
    """Bad ``distraction=`` source: missing folder, no frames, unreadable video, or a model
    without a skybox texture."""


def load_frames(
    source: str | Path,
    size: int,
    *,
    seed: int = 0,
    num_builtin_frames: int = 128,
    max_frames: int = 500,
) -> np.ndarray:
    """Load (or generate) the distraction clip as square RGB frames.

    Args:
        source: ``"builtin"``, a folder of ``.png``/``.jpg`` frames, a ``.gif``, or a video file.
        size: side length S of the output frames in pixels (each frame is resized to S x S
            with bilinear filtering).
        seed: seed of the builtin generator (ignored for files).
        num_builtin_frames: number of frames T of the builtin clip.
        max_frames: at most this many frames are read from a folder or video (the first ones).

    Returns:
        uint8 array ``[T, S, S, 3]``.

    Raises:
        DistractionError: missing path, folder without image frames, unknown file type,
            video file without ``imageio`` installed (the message says how to extract frames).
    """
    if int(size) < 1:
        raise DistractionError(f"frame size must be >= 1, got {size}")
    if isinstance(source, str) and source == BUILTIN:
        return builtin_frames(int(size), int(num_builtin_frames), seed=int(seed))
    path = Path(source).expanduser()
    if not path.exists():
        raise DistractionError(
            f"distraction source {str(path)!r} does not exist; pass 'builtin', a folder of "
            f"image frames ({', '.join(IMAGE_SUFFIXES)}), a .gif or a video file"
        )
    if path.is_dir():
        return frames_from_folder(path, int(size), max_frames=int(max_frames))
    suffix = path.suffix.lower()
    if suffix == ".gif":
        return _frames_from_gif(path, int(size), max_frames=int(max_frames))
    if suffix in VIDEO_SUFFIXES:
        return frames_from_video(path, int(size), max_frames=int(max_frames))
    raise DistractionError(
        f"cannot use {str(path)!r} as a distraction: expected a folder of image frames "
        f"({', '.join(IMAGE_SUFFIXES)}), a .gif, or a video ({', '.join(VIDEO_SUFFIXES)})"
    )


def _to_square_rgb(image: Any, size: int) -> np.ndarray:
    from PIL import Image

    rgb = image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)


def frames_from_folder(folder: str | Path, size: int, *, max_frames: int = 500) -> np.ndarray:
    """Read the image frames of ``folder`` (sorted by file name) as uint8 ``[T, S, S, 3]``.

    Raises:
        DistractionError: the folder does not exist or holds no ``.png``/``.jpg``/``.jpeg``
            files, or a file cannot be decoded.
    """
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise DistractionError(f"distraction folder {str(folder)!r} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DistractionError(
            f"distraction folder {str(folder)!r} holds no image frames "
            f"({', '.join(IMAGE_SUFFIXES)}); extract a video with e.g. "
            "'ffmpeg -i video.mp4 frames/%05d.png'"
        )
    out = np.empty((min(len(files), int(max_frames)), size, size, 3), dtype=np.uint8)
    for k, file in enumerate(files[: len(out)]):
        try:
            with Image.open(file) as image:
                out[k] = _to_square_rgb(image, size)
        except OSError as err:
            raise DistractionError(f"cannot read distraction frame {str(file)!r}: {err}") from err
    return out


def _frames_from_gif(path: Path, size: int, *, max_frames: int) -> np.ndarray:
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as image:
            frames = [
                _to_square_rgb(frame, size)
                for _, frame in zip(range(max_frames), ImageSequence.Iterator(image), strict=False)
            ]
    except OSError as err:
        raise DistractionError(f"cannot read distraction gif {str(path)!r}: {err}") from err
    return np.stack(frames)


def frames_from_video(path: str | Path, size: int, *, max_frames: int = 500) -> np.ndarray:
    """Read a video file with ``imageio`` as uint8 ``[T, S, S, 3]``.

    Raises:
        DistractionError: ``imageio`` is not installed (the message gives the ffmpeg command
            that extracts the frames to a folder instead) or the file cannot be decoded.
    """
    try:
        import imageio.v3 as iio
    except ImportError as err:
        raise DistractionError(
            f"reading the video {str(path)!r} needs the 'imageio' package with a video plugin "
            "(pip install 'imageio[pyav]'), which is not installed. Extract the frames to a "
            "folder instead, e.g. 'ffmpeg -i video.mp4 frames/%05d.png', and pass the folder."
        ) from err
    from PIL import Image

    frames = []
    try:
        for frame in iio.imiter(path):
            frames.append(_to_square_rgb(Image.fromarray(np.asarray(frame)), size))
            if len(frames) >= max_frames:
                break
    except Exception as err:
        raise DistractionError(f"cannot decode the video {str(path)!r}: {err}") from err
    if not frames:
        raise DistractionError(f"the video {str(path)!r} has no frames")
    return np.stack(frames)


def builtin_frames(size: int, num_frames: int, *, seed: int) -> np.ndarray:
    """Generate a seeded clip of moving procedural textures, uint8 ``[T, S, S, 3]``.

    Each frame is a sum of 4 drifting plane waves per colour channel (random direction,
    spatial frequency of 1-6 cycles per frame, temporal speed, phase) over which 6 discs of
    random colour and radius move in straight lines, wrapping around the frame. The clip is a
    pure function of ``(size, num_frames, seed)``.

    Raises:
        DistractionError: ``size`` or ``num_frames`` below 1.
    """
    if size < 1 or num_frames < 1:
        raise DistractionError(f"size and num_frames must be >= 1, got {size}, {num_frames}")
    rng = np.random.default_rng([int(seed), 0x0D15])
    num_waves, num_discs = 4, 6
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size  # [S] in (0, 1)
    t = np.arange(num_frames, dtype=np.float32)[:, None, None]  # [T, 1, 1]
    angle = rng.uniform(0.0, 2.0 * np.pi, (3, num_waves))
    cycles = rng.uniform(1.0, 6.0, (3, num_waves))
    speed = rng.uniform(0.05, 0.3, (3, num_waves))  # radians per frame
    phase = rng.uniform(0.0, 2.0 * np.pi, (3, num_waves))
    base = rng.uniform(0.2, 0.8, 3)
    frames = np.empty((num_frames, size, size, 3), dtype=np.float32)
    for c in range(3):
        acc = np.zeros((num_frames, size, size), dtype=np.float32)
        for k in range(num_waves):
            kx = np.float32(2.0 * np.pi * cycles[c, k] * np.cos(angle[c, k]))
            ky = np.float32(2.0 * np.pi * cycles[c, k] * np.sin(angle[c, k]))
            spatial = kx * coords[None, :] + ky * coords[:, None]  # [S(y), S(x)]
            acc += np.cos(spatial[None] - np.float32(speed[c, k]) * t + np.float32(phase[c, k]))
        frames[..., c] = base[c] + 0.25 * acc / np.sqrt(num_waves)
    start = rng.uniform(0.0, 1.0, (num_discs, 2))
    velocity = rng.uniform(-0.02, 0.02, (num_discs, 2))  # frame widths per frame
    radius = rng.uniform(0.05, 0.15, num_discs)
    colour = rng.uniform(0.0, 1.0, (num_discs, 3)).astype(np.float32)
    tt = np.arange(num_frames, dtype=np.float64)[:, None]
    for d in range(num_discs):
        centre = (start[d] + velocity[d] * tt) % 1.0  # [T, 2] (x, y)
        # distance on the torus so discs wrap smoothly around the edges
        dx = np.abs(coords[None, None, :] - centre[:, None, 0:1].astype(np.float32))
        dy = np.abs(coords[None, :, None] - centre[:, None, 1:2].astype(np.float32))
        dx = np.minimum(dx, 1.0 - dx)
        dy = np.minimum(dy, 1.0 - dy)
        inside = (dx * dx + dy * dy) <= np.float32(radius[d] ** 2)  # [T, S, S]
        frames[inside] = colour[d]
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


__all__ = [
    "BUILTIN",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "DistractionError",
    "builtin_frames",
    "frames_from_folder",
    "frames_from_video",
    "load_frames",
]
