"""Seeding and RNG state capture, so a resumed run continues the same random streams."""

from __future__ import annotations

import json
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy's legacy global RNG and torch; return a fresh numpy Generator."""
    random.seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002 (third-party code may use it)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def generator_state(rng: np.random.Generator) -> str:
    """A numpy Generator's state as a JSON string (for checkpoint metadata)."""
    return json.dumps(rng.bit_generator.state)


def restore_generator(rng: np.random.Generator, state: str) -> None:
    """Restore a state produced by :func:`generator_state`.

    Raises:
        ValueError: if the state belongs to another bit generator.
    """
    data: dict[str, Any] = json.loads(state)
    if data.get("bit_generator") != type(rng.bit_generator).__name__:
        raise ValueError(
            f"RNG state is for {data.get('bit_generator')}, not {type(rng.bit_generator).__name__}"
        )
    rng.bit_generator.state = data


def torch_rng_tensors() -> dict[str, torch.Tensor]:
    """torch's CPU RNG state as tensors (for safetensors)."""
    return {"rng/torch_cpu": torch.get_rng_state()}


def restore_torch_rng(tensors: dict[str, torch.Tensor]) -> None:
    """Restore torch's CPU RNG state saved by :func:`torch_rng_tensors` (if present)."""
    if "rng/torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng/torch_cpu"].to(torch.uint8))
