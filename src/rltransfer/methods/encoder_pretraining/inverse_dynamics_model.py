"""The inverse-dynamics model and its loss (Kadavath et al. 2021, Sec. 3.3.2, Fig. 6).

The conv layers of one encoder with tied weights applied to ``o_t`` and ``o_{t+1}``, the two
*flattened conv feature maps* concatenated, an MLP ``Dropout(0.5) -> 1024 -> LayerNorm -> ReLU
-> Dropout(0.5) -> 256 -> LayerNorm -> ReLU -> Dropout(0.5) -> action`` (layer order of the
public code's ``pretraining/env_trainer.py``); loss ``mean_t ||a_t - f(o_t, o_{t+1})||^2`` for
continuous actions (cross-entropy for discrete ones, our extension). The encoder's
``Linear -> LayerNorm -> tanh`` head takes no part (the public code's IK network has no such
head). Pixels are scaled by the encoder itself (``obs / 255 - 0.5``), identically here and in
RL (the public code fed unscaled pixels in pretraining; REFERENCE.md).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rltransfer.methods.encoder_pretraining.inverse_dynamics_data import TransitionFrames
from rltransfer.nets.pixel_encoders import PixelEncoder, PixelEncoderConfig


class InverseDynamicsModel(nn.Module):
    """``f(o_t, o_{t+1}) -> a_t`` with one conv encoder on both observations (tied weights).

    The flattened conv feature maps ``encoder.conv_features(o_t)`` and
    ``encoder.conv_features(o_{t+1})`` (``[B, C' H' W']`` each) are concatenated
    (``[B, 2 C' H' W']``) and mapped by ``Dropout -> Linear(hidden_dims[0]) -> LayerNorm ->
    ReLU -> Dropout -> ... -> Linear(out)`` (dropout on the input and after every hidden
    layer); ``out`` is the action dimension (Box: predicted action) or the number of actions
    (Discrete: logits). Kadavath et al. 2021, Fig. 6; layer order as in their public
    ``pretraining/env_trainer.py``. The encoder's head is not used (and gets no gradient).

    Args:
        encoder_config: the :class:`PixelEncoderConfig`.
        obs_shape: ``(C * S, H, W)`` stacked observation shape.
        action_dim: Box action size, or number of discrete actions.
        discrete: Discrete (cross-entropy) or Box (squared error) actions.
        hidden_dims: MLP hidden sizes.
        dropout: dropout probability on the concatenated features and after each hidden layer.

    Raises:
        PixelEncoderConfigError: the encoder does not fit ``obs_shape``.
    """

    def __init__(
        self,
        encoder_config: PixelEncoderConfig,
        obs_shape: tuple[int, int, int],
        action_dim: int,
        discrete: bool,
        hidden_dims: tuple[int, ...] = (1024, 256),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.encoder = PixelEncoder(encoder_config, obs_shape)
        self.discrete = bool(discrete)
        out_c, out_h, out_w = self.encoder.conv_output_shape
        self.conv_feature_size: int = out_c * out_h * out_w
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        width = 2 * self.conv_feature_size
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.ReLU(),
                       nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, action_dim))
        self.mlp = nn.Sequential(*layers)  # PyTorch's default init, as the public code

    def forward(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """``[B, C*S, H, W]`` pixels (uint8 or float in [0, 255]) twice -> ``[B, out]``."""
        features = self.encoder.conv_features(torch.cat([obs, next_obs], dim=0)).flatten(1)
        first, second = features.chunk(2, dim=0)
        return self.mlp(torch.cat([first, second], dim=1))

    def loss(self, prediction: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of ``||a - f||^2`` (Box, Kadavath et al. Sec. 3.3.2) or of the
        cross-entropy (Discrete; ``actions`` int64 labels)."""
        if self.discrete:
            return F.cross_entropy(prediction, actions)
        return (prediction - actions).pow(2).sum(dim=1).mean()


def predict_batch(
    model: InverseDynamicsModel,
    data: TransitionFrames,
    transitions: np.ndarray,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(o_t, o_{t+1}), a_t)`` on ``device`` for the triples ``transitions`` (int ``[n]``):
    the prediction ``[n, out]`` (with gradient when enabled) and the actions (``[n, act_dim]``
    float32 or ``[n]`` int64 labels)."""
    obs, actions, next_obs = data.batch(transitions)
    pred = model(_to_device(obs, device), _to_device(next_obs, device))
    return pred, _to_device(actions, device)


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


@torch.no_grad()
def evaluate_inverse_dynamics(
    model: InverseDynamicsModel,
    data: TransitionFrames,
    transitions: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
) -> dict[str, float]:
    """Validation metrics of ``model`` (in eval mode) on ``transitions``.

    Returns:
        ``loss`` (the training loss, averaged over triples); Discrete: ``accuracy`` and
        ``chance_accuracy`` (frequency of the most common action); Box: ``mse_per_dim`` and
        ``chance_mse_per_dim`` (squared error per action dimension of predicting the mean
        action).
    """
    was_training = model.training
    model.eval()
    total_loss, correct, sq_err = 0.0, 0, 0.0
    for start in range(0, len(transitions), batch_size):
        idx = transitions[start : start + batch_size]
        pred, target = predict_batch(model, data, idx, device)
        total_loss += float(model.loss(pred, target)) * len(idx)
        if model.discrete:
            correct += int((pred.argmax(dim=1) == target).sum())
        else:
            sq_err += float((pred - target).pow(2).sum())
    model.train(was_training)
    n = max(len(transitions), 1)
    metrics = {"loss": total_loss / n}
    labels = data.actions[transitions]
    if model.discrete:
        metrics["accuracy"] = correct / n
        counts = np.bincount(labels, minlength=data.action_dim)
        metrics["chance_accuracy"] = float(counts.max() / n)
    else:
        metrics["mse_per_dim"] = sq_err / (n * data.action_dim)
        metrics["chance_mse_per_dim"] = float(labels.var(axis=0).mean())
    return metrics



__all__ = ["InverseDynamicsModel", "evaluate_inverse_dynamics", "predict_batch"]
