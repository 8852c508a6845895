"""The grouped-conv image classifier and its loss (Kadavath et al. 2021, Sec. 3.2, Fig. 3-4).

Every conv of the encoder is a grouped conv with ``groups = F`` (BatchNorm is per channel), so
channel block ``g`` of the conv features only depends on image ``g`` of the datapoint; ``F``
linear heads each classify one image from its own block of conv features, and the loss is the
mean of the ``F`` cross-entropies (Sec. 3.2.1):

    L = 1/F * sum_i CE(y_i, f_i(I_i)).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rltransfer.core.config import ConfigError
from rltransfer.methods.encoder_pretraining.image_classification_data import stack_datapoints
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig


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


__all__ = ["GroupedImageClassifier", "evaluate_image_classifier"]
