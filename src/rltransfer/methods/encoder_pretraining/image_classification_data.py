"""Data for grouped-conv image-classification pretraining (Kadavath et al. 2021, Sec. 3.2):
an image folder read into memory, images grouped into datapoints of ``F`` images, and the
synthetic shape classes that stand in for ImageNet.

The folder has one sub-folder per class (``data_dir/<class>/*.png|jpg|...``), read with PIL,
each image's shorter side resized to ``image_size`` and centre-cropped. A datapoint is ``F``
random images stacked on channels, ``3F x H x W`` - the shape of an RL observation of ``F``
stacked RGB frames.

ImageNet cannot be downloaded here, so :func:`generate_shape_images` writes a small labelled
stand-in in that folder layout: procedurally drawn shapes (``SHAPE_KINDS``) in colour families
(``COLOUR_FAMILIES``), one class per (shape, colour) pair, each image with random position,
size, rotation, colour jitter, a textured background and distractor strokes. It is far easier
and less diverse than ImageNet (a deliberate stand-in: docs/decisions.md).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rltransfer.errors import UserError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm")
"""File name endings read as images (case-insensitive)."""


class ImageFolderError(UserError):
    """The image folder is missing, has fewer than two classes, an empty class, or an image
    PIL cannot read."""


def load_image_folder(
    data_dir: str | Path, image_size: int, max_images_per_class: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read a class-per-sub-folder image folder into memory.

    Each image is converted to RGB, its shorter side resized to ``image_size`` (bilinear) and
    the centre ``image_size x image_size`` cropped.

    Returns:
        ``(images, labels, class_names)``: uint8 ``[N, 3, image_size, image_size]``, int64
        ``[N]`` in ``[0, K)``, and the ``K`` sub-folder names in sorted order (label order).

    Raises:
        ImageFolderError: missing folder, fewer than two classes, a class without images, or
            an unreadable image (the message names the file).
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(data_dir)
    if not root.is_dir():
        raise ImageFolderError(f"image folder {root} does not exist")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(class_dirs) < 2:
        raise ImageFolderError(
            f"{root} has {len(class_dirs)} class sub-folder(s); put the images of each class in "
            "its own sub-folder (at least two classes)"
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, class_dir in enumerate(class_dirs):
        found = sorted(
            p for p in class_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if max_images_per_class is not None:
            found = found[:max_images_per_class]
        if not found:
            raise ImageFolderError(
                f"class folder {class_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})"
            )
        files += found
        labels += [label] * len(found)
    images = np.empty((len(files), 3, image_size, image_size), np.uint8)
    for i, path in enumerate(files):
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (OSError, UnidentifiedImageError) as e:
            raise ImageFolderError(f"cannot read image {path}: {e}") from e
        width, height = rgb.size
        scale = image_size / min(width, height)
        new_w, new_h = max(image_size, round(width * scale)), max(image_size, round(height * scale))
        rgb = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left, top = (new_w - image_size) // 2, (new_h - image_size) // 2
        rgb = rgb.crop((left, top, left + image_size, top + image_size))
        images[i] = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
    return images, np.asarray(labels, dtype=np.int64), [p.name for p in class_dirs]


def group_into_datapoints(
    indices: np.ndarray, images_per_datapoint: int, rng: np.random.Generator | None
) -> np.ndarray:
    """Group image indices into datapoints of ``F`` images: int64 ``[ceil(n / F), F]``.

    With ``rng`` the indices are shuffled first (a new grouping every epoch); a last partial
    group is filled by wrapping around to the first indices.
    """
    order = rng.permutation(indices) if rng is not None else np.asarray(indices)
    num = math.ceil(len(order) / images_per_datapoint) * images_per_datapoint
    return np.resize(order, num).reshape(-1, images_per_datapoint).astype(np.int64)


def stack_datapoints(images: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """uint8 ``[B, 3F, H, W]``: image ``groups[b, g]`` in channels ``[3g, 3g + 3)``."""
    batch = images[groups]  # [B, F, 3, H, W]
    b, f, c, h, w = batch.shape
    return batch.reshape(b, f * c, h, w)


# ---------------------------------------------------------------------- synthetic shapes

SHAPE_KINDS: tuple[str, ...] = (
    "disc", "square", "triangle", "ring", "cross", "diamond", "bars", "checker", "star", "arc",
)
"""Shapes drawn by :func:`draw_shape_image`."""

COLOUR_FAMILIES: dict[str, tuple[int, int, int]] = {
    "red": (220, 50, 50), "green": (50, 200, 60), "blue": (60, 80, 230),
    "yellow": (230, 210, 40), "magenta": (210, 60, 200), "cyan": (50, 210, 210),
    "white": (235, 235, 235), "orange": (240, 140, 30),
}
"""Base colours of the shape classes (each image jitters its colour by up to +-30)."""


def shape_classes(num_classes: int) -> list[tuple[str, str]]:
    """The first ``num_classes`` (shape, colour) class pairs, shapes varying fastest.

    Raises:
        ValueError: ``num_classes`` outside ``[2, len(SHAPE_KINDS) * len(COLOUR_FAMILIES)]``.
    """
    pairs = [(shape, colour) for colour in COLOUR_FAMILIES for shape in SHAPE_KINDS]
    if not 2 <= num_classes <= len(pairs):
        raise ValueError(f"num_classes must be in [2, {len(pairs)}], got {num_classes}")
    return pairs[:num_classes]


def draw_shape_image(shape: str, colour: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One image of class ``(shape, colour)``: uint8 ``[size, size, 3]``.

    A dark background with a random two-colour gradient and noise, two thin random grey
    strokes, and the shape (radius 0.2-0.4 of the side, random centre and rotation) filled
    with the colour family's base colour plus a per-image jitter in ``[-30, 30]``.

    Raises:
        ValueError: unknown ``shape`` or ``colour``.
    """
    from PIL import Image, ImageDraw

    if shape not in SHAPE_KINDS or colour not in COLOUR_FAMILIES:
        raise ValueError(f"unknown class ({shape!r}, {colour!r})")
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    c0, c1 = rng.integers(0, 70, 3), rng.integers(0, 70, 3)
    t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
    t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
    bg = c0 * (1 - t) + c1 * t + rng.normal(0, 6, (size, size, 3))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(2):
        grey = int(rng.integers(60, 140))
        draw.line([tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(2)],
                  fill=(grey, grey, grey), width=max(1, size // 40))
    fill = tuple(int(v) for v in np.clip(np.add(COLOUR_FAMILIES[colour],
                                                rng.integers(-30, 31, 3)), 0, 255))
    r = float(rng.uniform(0.2, 0.4)) * size
    cx, cy = (float(v) for v in rng.uniform(r, size - r, 2))
    angle = float(rng.uniform(0, 2 * np.pi))

    def polygon(n: int, radii: list[float]) -> list[tuple[float, float]]:
        return [(cx + radii[k % len(radii)] * np.cos(angle + 2 * np.pi * k / n),
                 cy + radii[k % len(radii)] * np.sin(angle + 2 * np.pi * k / n))
                for k in range(n)]

    box = (cx - r, cy - r, cx + r, cy + r)
    width = max(2, int(r / 3))
    if shape == "disc":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.polygon(polygon(4, [r]), fill=fill)
    elif shape == "triangle":
        draw.polygon(polygon(3, [r]), fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=width)
    elif shape == "cross":
        ends = polygon(4, [r])
        draw.line([ends[0], ends[2]], fill=fill, width=width)
        draw.line([ends[1], ends[3]], fill=fill, width=width)
    elif shape == "diamond":
        draw.polygon(polygon(4, [r, 0.5 * r]), fill=fill)
    elif shape == "star":
        draw.polygon(polygon(10, [r, 0.4 * r]), fill=fill)
    elif shape == "arc":
        start = float(np.degrees(angle))
        draw.arc(box, start, start + 180.0, fill=fill, width=width)
    elif shape == "bars":
        step = max(3, int(r / 2))
        for k in range(-3, 4):
            off = k * step
            dx, dy = np.cos(angle), np.sin(angle)
            draw.line([(cx + off * dx - r * dy, cy + off * dy + r * dx),
                       (cx + off * dx + r * dy, cy + off * dy - r * dx)],
                      fill=fill, width=max(1, step // 2))
    else:  # checker
        cell = max(2, int(r / 2))
        x0, y0 = int(cx - r), int(cy - r)
        for i in range(4):
            for j in range(4):
                if (i + j) % 2 == 0:
                    draw.rectangle((x0 + i * cell, y0 + j * cell,
                                    x0 + (i + 1) * cell - 1, y0 + (j + 1) * cell - 1), fill=fill)
    return np.asarray(img, dtype=np.uint8)


def generate_shape_images(
    out_dir: str | Path,
    *,
    num_classes: int = 20,
    images_per_class: int = 100,
    size: int = 84,
    seed: int = 0,
) -> Path:
    """Write a labelled image folder (``out_dir/<shape>_<colour>/<k>.png``) of procedurally
    drawn shapes for :func:`pretrain_image_classification`; nothing is downloaded.

    The folder is a pure function of the arguments. An existing folder holding a complete
    data set with the same arguments (``dataset.json``) is reused as is.

    Args:
        out_dir: folder to create.
        num_classes: ``K`` (shape, colour) classes, see :func:`shape_classes`.
        images_per_class: images written per class.
        size: side of the square PNG images in pixels.
        seed: seed of the drawing.

    Returns:
        ``out_dir``.

    Raises:
        ValueError: ``num_classes`` out of range, or non-positive sizes.
    """
    import json

    from PIL import Image

    if images_per_class < 1 or size < 8:
        raise ValueError(f"need images_per_class >= 1 and size >= 8, got {images_per_class}, "
                         f"{size}")
    classes = shape_classes(num_classes)
    root = Path(out_dir)
    spec = {"num_classes": num_classes, "images_per_class": images_per_class, "size": size,
            "seed": seed, "generator": "shapes-v1"}
    marker = root / "dataset.json"
    if marker.is_file() and json.loads(marker.read_text()) == spec:
        return root
    rng = np.random.default_rng([seed, 0x5A9E])
    for shape, colour in classes:
        folder = root / f"{shape}_{colour}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(images_per_class):
            Image.fromarray(draw_shape_image(shape, colour, size, rng)).save(
                folder / f"{k:05d}.png")
    marker.write_text(json.dumps(spec))
    return root


__all__ = [
    "COLOUR_FAMILIES",
    "IMAGE_EXTENSIONS",
    "SHAPE_KINDS",
    "ImageFolderError",
    "draw_shape_image",
    "generate_shape_images",
    "group_into_datapoints",
    "load_image_folder",
    "shape_classes",
    "stack_datapoints",
]
