"""Grouped-conv image-classification encoder pretraining (Kadavath et al. 2021, Sec. 3.2).

A datapoint is ``F`` random images stacked on channels, ``3F x H x W`` - the shape of an RL
observation of ``F`` stacked RGB frames. Every conv of the encoder is a grouped conv with
``groups = F`` (BatchNorm is per channel), so channel block ``g`` of the conv features only
depends on image ``g`` (Fig. 4); ``F`` linear heads each classify one image from its own
block of conv features, and the loss is the mean of the ``F`` cross-entropies (Sec. 3.2.1):

    L = 1/F * sum_i CE(y_i, f_i(I_i)).

The paper uses 100 ImageNet classes, 84x84 crops, F = 3 and 3x the RL encoder's filters (96)
for 400 epochs. Here any image folder works: one sub-folder per class (``data_dir/<class>/
*.png|jpg|...``), read with PIL, the shorter side resized to ``image_size`` and centre-cropped.
The trained conv layers are saved (without the unused encoder head) for
:func:`rltransfer.methods.encoder_pretraining.transfer.load_pretrained_encoder`; the RL encoder
must use the same
``groups``.

ImageNet cannot be downloaded here, so :func:`generate_shape_images` writes a small labelled
stand-in in that folder layout: procedurally drawn shapes (``SHAPE_KINDS``) in colour families
(``COLOUR_FAMILIES``), one class per (shape, colour) pair, each image with random position,
size, rotation, colour jitter, a textured background and distractor strokes. It is far easier
and less diverse than ImageNet (a deliberate stand-in: docs/decisions.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rltransfer.core.config import ConfigError, save_config, to_dict
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.seeding import seed_everything
from rltransfer.errors import UserError
from rltransfer.methods.encoder_pretraining.supervised import (
    EpochProgress,
    resolve_device,
    set_torch_threads,
    train_validation_split,
)
from rltransfer.methods.encoder_pretraining.transfer import save_encoder
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm")
"""File name endings read as images (case-insensitive)."""


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


class ImageFolderError(UserError):
    """The image folder is missing, has fewer than two classes, an empty class, or an image
    PIL cannot read."""


def _paper_encoder() -> PixelEncoderConfig:
    return PixelEncoderConfig(kind="pad11", num_filters=96, feature_dim=100, groups=3)


@dataclass
class ImageClassificationConfig:
    """Grouped-conv image-classification pretraining (Kadavath et al. 2021, Sec. 3.2).

    Attributes:
        data_dir: image folder, one sub-folder per class.
        image_size: side of the square crops (84, the RL observation size).
        images_per_datapoint: ``F``, images stacked per datapoint (3 = the RL frame stack);
            must equal ``encoder.groups``.
        max_images_per_class: read at most this many images per class (None = all).
        encoder: the grouped conv encoder (the paper: 11 conv layers with BatchNorm, 96
            filters = 3x the IK encoder's, ``groups = F``).
        lr: Adam learning rate.
        batch_size: datapoints (of ``F`` images each) per update.
        epochs: passes over the training images (the paper: 400).
        validation_fraction: held-out share of the images.
        seed: seeds the split, the grouping of images into datapoints, initialisation.
        out_dir: run directory: ``config.json``, ``metrics.jsonl``, checkpoint ``encoder/``.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        torch_threads: ``torch.set_num_threads`` (0 = torch's default).
        progress: show a progress bar (on a terminal).
    """

    data_dir: str = ""
    image_size: int = 84
    images_per_datapoint: int = 3
    max_images_per_class: int | None = None
    encoder: PixelEncoderConfig = field(default_factory=_paper_encoder)
    lr: float = 1e-3
    batch_size: int = 128
    epochs: int = 400
    validation_fraction: float = 0.05
    seed: int = 0
    out_dir: str = "runs/pretrain_image_classification"
    device: str = "cpu"
    torch_threads: int = 0
    progress: bool = True

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming every invalid field."""
        problems = []
        if not self.data_dir:
            problems.append(
                "data_dir is required (a folder with one sub-folder per class; "
                "rltransfer.methods.encoder_pretraining.image_classification"
                ".generate_shape_images(DIR) writes the "
                "project's synthetic shape classes there)"
            )
        for name in ("image_size", "images_per_datapoint", "batch_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_images_per_class is not None and self.max_images_per_class < 1:
            problems.append(f"max_images_per_class must be >= 1, got {self.max_images_per_class}")
        if self.epochs < 0:
            problems.append(f"epochs must be >= 0, got {self.epochs}")
        if self.encoder.groups != self.images_per_datapoint:
            problems.append(
                f"encoder.groups ({self.encoder.groups}) must equal images_per_datapoint "
                f"({self.images_per_datapoint}) so that the images never mix"
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            problems.append(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if problems:
            raise ConfigError("ImageClassificationConfig: " + "; ".join(problems))


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


class GroupedImageClassifier(nn.Module):
    """``F`` images on channels -> ``F`` class logit vectors, images kept separate.

    The :class:`PixelEncoder` (``groups = F``) computes conv features ``[B, C', H', W']``; head
    ``g`` (a ``Linear``) classifies image ``g`` from channel block ``[g C'/F, (g+1) C'/F)``,
    flattened. Kadavath et al. 2021, Fig. 3-4.

    Args:
        encoder_config: must have ``groups = images_per_datapoint``.
        images_per_datapoint: ``F``.
        image_shape: one image, ``(3, H, W)``.
        num_classes: ``K``.

    Raises:
        ConfigError: ``encoder_config.groups != F``.
    """

    def __init__(
        self,
        encoder_config: PixelEncoderConfig,
        images_per_datapoint: int,
        image_shape: tuple[int, int, int],
        num_classes: int,
    ) -> None:
        super().__init__()
        if encoder_config.groups != images_per_datapoint:
            raise ConfigError(
                f"encoder groups ({encoder_config.groups}) must equal the images per datapoint "
                f"({images_per_datapoint})"
            )
        c, h, w = image_shape
        self.images_per_datapoint = images_per_datapoint
        self.encoder = PixelEncoder(encoder_config, (c * images_per_datapoint, h, w))
        out_c, out_h, out_w = self.encoder.conv_output_shape
        block = out_c // images_per_datapoint * out_h * out_w
        self.heads = nn.ModuleList(
            [nn.Linear(block, num_classes) for _ in range(images_per_datapoint)]
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``[B, 3F, H, W]`` pixels in [0, 255] -> logits ``[B, F, K]``."""
        features = self.encoder.conv_features(obs)
        blocks = features.reshape(features.shape[0], self.images_per_datapoint, -1)
        return torch.stack([head(blocks[:, g]) for g, head in enumerate(self.heads)], dim=1)

    @staticmethod
    def loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean over the ``F`` heads of the batch-mean cross-entropy (``labels`` int64
        ``[B, F]``)."""
        return F.cross_entropy(logits.flatten(0, 1), labels.flatten())


@torch.no_grad()
def evaluate_image_classifier(
    model: GroupedImageClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
) -> dict[str, float | list[float]]:
    """``loss``, ``accuracy`` (over all heads) and ``accuracy_per_head`` on datapoints
    ``groups`` (int ``[n, F]``), in eval mode."""
    was_training = model.training
    model.eval()
    total, correct = 0.0, np.zeros(model.images_per_datapoint)
    for start in range(0, len(groups), batch_size):
        g = groups[start : start + batch_size]
        logits = model(torch.from_numpy(stack_datapoints(images, g)).to(device))
        target = torch.from_numpy(labels[g]).to(device)
        total += float(model.loss(logits, target)) * len(g)
        correct += (logits.argmax(dim=2) == target).sum(dim=0).cpu().numpy()
    model.train(was_training)
    n = max(len(groups), 1)
    per_head = (correct / n).tolist()
    return {"loss": total / n, "accuracy": float(np.mean(per_head)), "accuracy_per_head": per_head}


def pretrain_image_classification(cfg: ImageClassificationConfig) -> Path:
    """Train the grouped classifier on ``cfg.data_dir`` and save its conv layers.

    Writes ``cfg.out_dir/config.json``, ``metrics.jsonl`` (one ``"pretrain"`` record per
    epoch: ``train_loss``, ``val_loss``, ``val_accuracy``, ``val_accuracy_per_head``) and the
    checkpoint ``cfg.out_dir/encoder`` (convs only, source ``"image_classification"``, obs
    shape ``(3F, S, S)``, meta ``classes`` and ``metrics``).

    Returns:
        The encoder checkpoint directory.

    Raises:
        ConfigError: invalid config or device.
        ImageFolderError: unusable image folder.
    """
    cfg.validate()
    set_torch_threads(cfg.torch_threads)
    device = resolve_device(cfg.device)
    rng = seed_everything(cfg.seed)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.json")
    images, labels, classes = load_image_folder(
        cfg.data_dir, cfg.image_size, cfg.max_images_per_class
    )
    f = cfg.images_per_datapoint
    train_idx, val_idx = train_validation_split(len(images), cfg.validation_fraction, rng)
    val_groups = group_into_datapoints(val_idx, f, rng)
    model = GroupedImageClassifier(cfg.encoder, f, images.shape[1:], len(classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    updates_per_epoch = math.ceil(math.ceil(len(train_idx) / f) / cfg.batch_size)
    history: list[dict[str, float | list[float]]] = []
    logger = MetricsLogger(out_dir, tensorboard=False)
    try:
        with EpochProgress(
            "image classification", cfg.epochs * updates_per_epoch, enabled=cfg.progress
        ) as bar:
            for epoch in range(1, cfg.epochs + 1):
                start_time = time.perf_counter()
                model.train()
                groups = group_into_datapoints(train_idx, f, rng)
                losses = []
                for start in range(0, len(groups), cfg.batch_size):
                    g = groups[start : start + cfg.batch_size]
                    logits = model(torch.from_numpy(stack_datapoints(images, g)).to(device))
                    loss = model.loss(logits, torch.from_numpy(labels[g]).to(device))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.item())
                    bar.advance()
                record: dict[str, float | list[float]] = {
                    "epoch": epoch,
                    "train_loss": float(np.mean(losses)),
                }
                if len(val_idx):
                    val = evaluate_image_classifier(model, images, labels, val_groups, device)
                    record.update({f"val_{k}": v for k, v in val.items()})
                record["seconds"] = time.perf_counter() - start_time
                history.append(record)
                logger.log("pretrain", 0, **record)
                bar.advance(0, info=f"epoch {epoch}: val_accuracy={record.get('val_accuracy')}")
    finally:
        logger.close()
    model.to("cpu")
    return save_encoder(
        model.encoder,
        out_dir / "encoder",
        model.encoder.obs_shape,
        "image_classification",
        geometry={"frame_stack": f},
        extra_meta={
            "classes": classes,
            "images_per_datapoint": f,
            "metrics": history[-1] if history else {},
            "data": {
                "num_images": len(images),
                "num_train": len(train_idx),
                "num_validation": len(val_idx),
            },
            "config": to_dict(cfg),
        },
        include_head=False,
    )


__all__ = [
    "GroupedImageClassifier",
    "ImageClassificationConfig",
    "ImageFolderError",
    "draw_shape_image",
    "evaluate_image_classifier",
    "generate_shape_images",
    "group_into_datapoints",
    "load_image_folder",
    "pretrain_image_classification",
    "shape_classes",
    "stack_datapoints",
]
