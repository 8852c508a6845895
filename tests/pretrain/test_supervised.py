"""The epoch loop both supervised encoder pretrainings run (``supervised.fit_epochs``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rltransfer.core.progress import RunProgress
from rltransfer.methods.encoder_pretraining.supervised import fit_epochs


def test_fit_epochs_records_and_draws_batches_every_epoch() -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(12, 2)
    y = x @ torch.tensor([[1.0], [-2.0]])
    rng = np.random.default_rng(0)
    draws: list[np.ndarray] = []

    def epoch_batches() -> list[np.ndarray]:
        order = rng.permutation(12)
        draws.append(order)
        return [order[:6], order[6:]]

    def batch_loss(idx: np.ndarray) -> torch.Tensor:
        return (model(x[idx]) - y[idx]).pow(2).mean()

    calls = []

    def validate() -> dict[str, float]:
        calls.append(model.training)
        return {"loss": batch_loss(np.arange(12)).item()}

    with RunProgress("test", 6, enabled=False, unit="updates") as bar:
        history = fit_epochs(model, optimizer, epochs=3, epoch_batches=epoch_batches,
                             batch_loss=batch_loss, validate=validate, progress=bar)
    assert [r["epoch"] for r in history] == [1, 2, 3] and len(draws) == 3
    assert set(history[0]) == {"epoch", "train_loss", "val_loss", "seconds"}
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert calls == [True, True, True]  # the loop leaves eval mode to validate itself
    with RunProgress("test", 0, enabled=False, unit="updates") as bar:
        assert fit_epochs(model, optimizer, epochs=0, epoch_batches=epoch_batches,
                          batch_loss=batch_loss, validate=None, progress=bar) == []
        one = fit_epochs(model, optimizer, epochs=1, epoch_batches=epoch_batches,
                         batch_loss=batch_loss, validate=None, progress=bar)
    assert set(one[0]) == {"epoch", "train_loss", "seconds"}
    assert np.isfinite(one[0]["train_loss"])
