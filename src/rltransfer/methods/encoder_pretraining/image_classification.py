"""Grouped-conv image-classification encoder pretraining (Kadavath et al. 2021, Sec. 3.2):
the configuration and the run (:func:`pretrain_image_classification`).

Data (:mod:`~rltransfer.methods.encoder_pretraining.image_classification_data`): an image
folder, one sub-folder per class, read into memory; a datapoint is ``F`` random images stacked
on channels, ``3F x H x W`` - the shape of an RL observation of ``F`` stacked RGB frames
(without ImageNet: the project's synthetic shape classes, ``generate_shape_images``). Model
(:mod:`~rltransfer.methods.encoder_pretraining.image_classification_model`): a grouped-conv
encoder (``groups = F``) with ``F`` linear heads, one per image; loss the mean of the ``F``
cross-entropies (Sec. 3.2.1). Training: Adam, the shared epoch loop
(:func:`~rltransfer.methods.encoder_pretraining.supervised.fit_epochs`), a new grouping of the
training images into datapoints every epoch.

The paper uses 100 ImageNet classes, 84x84 crops, F = 3 and 3x the RL encoder's filters (96)
for 400 epochs. The trained conv layers are saved (without the unused encoder head) for
:func:`rltransfer.methods.encoder_pretraining.transfer.load_pretrained_encoder`; the RL encoder
must use the same ``groups``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rltransfer.core.config import ConfigError, save_config, to_dict
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.progress import RunProgress
from rltransfer.core.seeding import seed_everything
from rltransfer.methods.encoder_pretraining.image_classification_data import (
    group_into_datapoints,
    load_image_folder,
    stack_datapoints,
)
from rltransfer.methods.encoder_pretraining.image_classification_model import (
    GroupedImageClassifier,
    evaluate_image_classifier,
)
from rltransfer.methods.encoder_pretraining.supervised import (
    fit_epochs,
    resolve_device,
    set_torch_threads,
    train_validation_split,
)
from rltransfer.methods.encoder_pretraining.transfer import save_encoder
from rltransfer.nets.pixel_encoders import PixelEncoderConfig


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
                "rltransfer.methods.encoder_pretraining.image_classification_data"
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

    def epoch_batches() -> list[np.ndarray]:
        groups = group_into_datapoints(train_idx, f, rng)
        return [groups[start : start + cfg.batch_size]
                for start in range(0, len(groups), cfg.batch_size)]

    def batch_loss(g: np.ndarray) -> torch.Tensor:
        logits = model(torch.from_numpy(stack_datapoints(images, g)).to(device))
        return model.loss(logits, torch.from_numpy(labels[g]).to(device))

    def validate() -> dict[str, float | list[float]]:
        return evaluate_image_classifier(model, images, labels, val_groups, device)

    logger = MetricsLogger(out_dir, tensorboard=False)
    try:
        with RunProgress(
            "image classification", cfg.epochs * updates_per_epoch, enabled=cfg.progress,
            unit="updates",
        ) as bar:
            history = fit_epochs(
                model,
                optimizer,
                epochs=cfg.epochs,
                epoch_batches=epoch_batches,
                batch_loss=batch_loss,
                validate=validate if len(val_idx) else None,
                progress=bar,
                logger=logger,
            )
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


__all__ = ["ImageClassificationConfig", "pretrain_image_classification"]
