"""Smoke runs of the pixel-SAC, encoder-pretraining and EfficientZero CLI verbs (the
Behavior Transfer verbs are in test_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rltransfer.cli import main

ENCODER = ["--encoder.kind", "drq4", "--encoder.num-filters", "8", "--encoder.feature-dim",
           "16"]


@pytest.mark.slow
def test_encoder_pretraining_then_sac_from_it(tmp_path: Path) -> None:
    pytest.importorskip("dm_control")
    pre = tmp_path / "ik"
    main(["pretrain-encoder", "--env-id", "DMC/reacher-easy", "--num-transitions", "40",
          "--render-size", "48", "--crop-size", "None", "--epochs", "1", "--batch-size", "8",
          "--out-dir", str(pre), "--no-progress", *ENCODER])
    assert (pre / "encoder" / "meta.json").is_file()
    run = tmp_path / "sac"
    main(["train-sac", "--env-id", "DMC/reacher-easy", "--total-env-steps", "60",
          "--render-size", "48", "--learning-starts-env-steps", "50", "--agent.batch-size", "4",
          "--agent.hidden-dim", "16", "--eval-every-env-steps", "60", "--eval-episodes", "1",
          "--checkpoint-every-env-steps", "60", "--init-encoder-from", str(pre / "encoder"),
          "--run-dir", str(run), "--no-progress", "--no-tensorboard", *ENCODER])
    assert (run / "final" / "meta.json").is_file()
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["init_encoder_from"] == str(pre / "encoder")


@pytest.mark.slow
def test_image_pretraining_verb(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "images"
    for k, colour in enumerate([(255, 0, 0), (0, 0, 255)]):
        (data / f"class_{k}").mkdir(parents=True)
        for i in range(6):
            img = np.full((20, 20, 3), colour, np.uint8)
            img[rng.integers(0, 20, 30), rng.integers(0, 20, 30)] = 128
            Image.fromarray(img).save(data / f"class_{k}" / f"{i}.png")
    out = tmp_path / "cls"
    main(["pretrain-images", "--data-dir", str(data), "--image-size", "16", "--epochs", "1",
          "--batch-size", "4", "--out-dir", str(out), "--no-progress",
          "--encoder.kind", "drq4", "--encoder.num-filters", "12", "--encoder.groups", "3"])
    assert (out / "encoder" / "meta.json").is_file()


@pytest.mark.slow
def test_efficientzero_verb_and_recipe(tmp_path: Path) -> None:
    run = tmp_path / "ez"
    main(["train-ez", "--env-id", "MinAtar/Breakout-v1", "--num-envs", "2",
          "--total-env-steps", "120", "--learning-starts-env-steps", "60", "--batch-size", "4",
          "--mcts.num-simulations", "2", "--eval-every-env-steps", "120", "--eval-episodes",
          "1", "--max-episode-frames", "100", "--checkpoint-every-env-steps", "120",
          "--run-dir", str(run), "--no-progress", "--no-tensorboard"])
    assert (run / "final" / "meta.json").is_file()

    with pytest.raises(SystemExit) as exc:
        main(["run", "no-such-recipe"])
    assert exc.value.code == 2
