"""The toy inverse-dynamics (IK) accuracy check: IK pretraining on ``SquareEnv`` (a white
square on a black torus, moved by the action; tests/pretrain/toy_envs.py), seeds 0-2,
discrete (5 moves) and continuous (2-d) actions, validation accuracy / MSE per action
dimension against chance.

Usage::

    OMP_NUM_THREADS=1 python -m benchmarks.ik_toy [--seeds 3] [--epochs 12]

``--mlp-input head`` runs the earlier (wrong) model for comparison: the MLP on the encoder
head's ``Linear -> LayerNorm -> tanh`` output with dropout on its input only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tests.pretrain.toy_envs import square_vector_env
from torch import nn

from rltransfer.methods.encoder_pretraining.inverse_dynamics import train_inverse_dynamics
from rltransfer.methods.encoder_pretraining.inverse_dynamics_data import collect_random_transitions
from rltransfer.methods.encoder_pretraining.inverse_dynamics_model import InverseDynamicsModel
from rltransfer.methods.encoder_pretraining.supervised import train_validation_split
from rltransfer.nets.pixel_encoders import PixelEncoderConfig


class _HeadInputModel(InverseDynamicsModel):
    """The model before the fix: MLP on the two head outputs, dropout on its input only."""

    def __init__(self, *args: object, hidden: tuple[int, ...], dropout: float) -> None:
        super().__init__(*args, hidden_dims=hidden, dropout=dropout)  # type: ignore[arg-type]
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        width = 2 * self.encoder.feature_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, self.mlp[-1].out_features))
        self.mlp = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        first, second = self.encoder(torch.cat([obs, next_obs], dim=0)).chunk(2, dim=0)
        return self.mlp(torch.cat([first, second], dim=1))


def run(continuous: bool, seed: int, epochs: int, mlp_input: str) -> dict[str, float]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    env = square_vector_env(8, continuous=continuous, seed=seed)
    data = collect_random_transitions(env, 2400, reset_every_env_steps=100, frame_stack=2,
                                      seed=seed)
    train_idx, val_idx = train_validation_split(len(data), 0.1, rng)
    encoder = PixelEncoderConfig(kind="drq4", num_filters=16, feature_dim=100)
    args = (encoder, data.obs_shape, data.action_dim, data.discrete)
    model = (InverseDynamicsModel(*args, (1024, 256), 0.5) if mlp_input == "conv"
             else _HeadInputModel(*args, hidden=(1024, 256), dropout=0.5))
    start = time.perf_counter()
    history = train_inverse_dynamics(model, data, train_idx, val_idx, epochs=epochs,
                                     batch_size=32, lr=1e-3, rng=rng, device=torch.device("cpu"))
    return {**history[-1], "wall_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--mlp-input", choices=("conv", "head"), default="conv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for continuous in (False, True):
        metric = "val_mse_per_dim" if continuous else "val_accuracy"
        chance = "val_chance_mse_per_dim" if continuous else "val_chance_accuracy"
        results = [run(continuous, s, args.epochs, args.mlp_input) for s in range(args.seeds)]
        print(f"{'continuous' if continuous else 'discrete':10s} {metric}: "
              + ", ".join(f"{r[metric]:.3f}" for r in results)
              + f" (chance {np.mean([r[chance] for r in results]):.3f}; "
              f"{np.mean([r['wall_s'] for r in results]):.1f} s per seed)")


if __name__ == "__main__":
    main()
