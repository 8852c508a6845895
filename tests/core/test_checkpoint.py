from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rltransfer.core.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    prune_checkpoints,
    save_checkpoint,
    step_dirname,
)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_round_trip_torch_and_numpy(tmp_path: Path) -> None:
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": np.ones(4, np.uint8)}
    path = save_checkpoint(tmp_path / "step_1", tensors, {"env_steps": 7, "nested": {"x": [1]}})
    loaded, meta = load_checkpoint(path)
    assert torch.equal(loaded["a"], tensors["a"])
    assert loaded["b"].dtype == torch.uint8 and loaded["b"].tolist() == [1, 1, 1, 1]
    assert meta["env_steps"] == 7 and meta["nested"] == {"x": [1]}
    assert meta["format"] == "rltransfer-checkpoint"


def test_overwrite_is_atomic_and_leaves_no_temporaries(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "ck", {"a": torch.zeros(2)}, {"v": 1})
    save_checkpoint(tmp_path / "ck", {"a": torch.ones(2)}, {"v": 2})
    loaded, meta = load_checkpoint(tmp_path / "ck")
    assert meta["v"] == 2 and loaded["a"].tolist() == [1.0, 1.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck"]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_tensor_file_is_detected_and_nothing_changes(tmp_path: Path, damage: str) -> None:
    path = save_checkpoint(tmp_path / "ck", {"a": torch.randn(100)}, {})
    f = path / "tensors.safetensors"
    data = bytearray(f.read_bytes())
    if damage == "flip":
        data[-3] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    f.write_bytes(bytes(data))
    before = _tree_digest(tmp_path)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(path)
    assert _tree_digest(tmp_path) == before


def test_foreign_and_broken_metadata(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "ck", {"a": torch.zeros(1)}, {})
    meta = json.loads((path / "meta.json").read_text())
    meta["format"] = "someone-else"
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not an rltransfer checkpoint"):
        load_checkpoint(path)
    (path / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint directory"):
        load_checkpoint(tmp_path / "missing")


def test_pickle_file_is_not_loaded(tmp_path: Path) -> None:
    # A torch.save (pickle) file in place of the tensors must be rejected, never unpickled.
    path = save_checkpoint(tmp_path / "ck", {"a": torch.zeros(1)}, {})
    torch.save({"a": torch.zeros(1)}, path / "tensors.safetensors")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_latest_ignores_partial_writes_and_prune_keeps_newest(tmp_path: Path) -> None:
    for steps in (10, 200, 3000):
        save_checkpoint(tmp_path / step_dirname(steps), {"a": torch.zeros(1)}, {"s": steps})
    (tmp_path / ".tmp-step_999999999999").mkdir()  # a write killed midway
    latest = latest_checkpoint(tmp_path)
    assert latest is not None and latest.name == step_dirname(3000)
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [step_dirname(200), step_dirname(3000)]
