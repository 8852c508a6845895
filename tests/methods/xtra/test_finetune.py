"""XTRA's cross-task finetuning: Eq. 1 through batch weights (eta = 0 is the target-only
gradient), the transfer variants (exactly the named components loaded, a frozen h unchanged),
task weights logged and checkpointed."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from rltransfer.agents.efficientzero.config import EZTrainConfig
from rltransfer.agents.efficientzero.losses import weighted_loss
from rltransfer.agents.efficientzero.mcts import MCTSConfig
from rltransfer.agents.efficientzero.reanalyse import ReanalyseConfig
from rltransfer.core.metrics import MetricsLogger
from rltransfer.methods.xtra.config import DistillConfig, TeacherConfig
from rltransfer.methods.xtra.distill import distill_student
from rltransfer.methods.xtra.finetune import (
    FinetuneConfig,
    XTRATrainer,
    finetune_xtra,
    split_evenly,
)
from rltransfer.methods.xtra.teachers import train_teacher
from tests.methods.xtra.conftest import GAMES, save_dataset, tiny_fields

pytestmark = pytest.mark.slow  # trains agents

COMPONENTS = ("representation", "dynamics", "prediction", "projection")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A tiny teacher + student on Asterix and its dataset."""
    tmp = tmp_path_factory.mktemp("xtra")
    data = save_dataset(tmp, GAMES["asterix"], seed=3)
    teacher = str(tmp / "teacher")
    train_teacher(TeacherConfig(**tiny_fields(), run_dir=teacher, dataset=data))
    student = str(tmp / "student")
    distill_student(DistillConfig(**tiny_fields(), run_dir=student, datasets=(data,),
                                  teachers=(teacher,)))
    return {"data": data, "student": student, "root": str(tmp)}


def target_run(run_dir: Path, **changes: Any) -> EZTrainConfig:
    cfg = EZTrainConfig(
        env_id=GAMES["breakout"], num_envs=2, total_env_steps=40, seed=3, run_dir=str(run_dir),
        mcts=MCTSConfig(num_simulations=2, discount=0.99),
        reanalyse=ReanalyseConfig(reanalyse_fraction=0.25, value_target="network"),
        replay_capacity_env_steps=200, batch_size=8, learning_starts_env_steps=16,
        eval_every_env_steps=1_000, eval_episodes=1, checkpoint_every_env_steps=20,
        selfplay_update_interval_updates=5, action_space="minatar-union", pad_channels=10,
        progress=False, tensorboard=False)
    cfg.learner = dataclasses.replace(cfg.learner, discount=0.99, lr_warmup_updates=1)
    return dataclasses.replace(cfg, **changes)


def test_split_evenly() -> None:
    assert split_evenly(10, 4) == [3, 3, 2, 2]
    assert split_evenly(256, 4) == [64] * 4


def test_eta_zero_is_the_target_only_gradient(pipeline: dict[str, str], tmp_path: Path) -> None:
    trainer = XTRATrainer(FinetuneConfig(train=target_run(tmp_path / "r"),
                                         sources=(pipeline["data"],)))
    trainer.start_collecting()
    while not trainer.replay.can_sample():  # fill the replay
        trainer.collect_step(MetricsLogger(tmp_path / 'log', tensorboard=False))
        trainer.env_steps += 2
    target = trainer.reanalyser.make_batch(trainer.learner.target_network, 6, trainer.rng, 1.0)
    (part,) = trainer._source_batches()
    learner = trainer.learner
    params = [p for _, p in learner._trainable()]

    def grads(eta: float) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        batch = trainer.weighted_batch(dataclasses.replace(target), [dataclasses.replace(part)],
                                       [eta])
        torch.manual_seed(0)
        learner._train_modes()
        terms, _ = learner._unroll(batch.obs, batch.future_obs, batch.actions,
                                   batch.target_value_prefixes, batch.target_values,
                                   batch.target_policies, batch.mask)
        loss, _ = weighted_loss(terms, batch.weights, learner.config.loss_weights)
        k = len(terms.value_prefix)
        per = terms.per_sample(0, 0, learner.config.loss_weights) + terms.per_sample(
            1, k, learner.config.loss_weights)
        target_only = (target.weights * per[:6]).mean()
        source_only = per[6:].mean()
        g = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        g_t = torch.autograd.grad(target_only, params, retain_graph=True, allow_unused=True)
        assert torch.allclose(loss, target_only + eta * source_only, rtol=1e-5, atol=1e-6)
        flat = torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1)
                          for x, p in zip(g, params, strict=True)])
        flat_t = torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1)
                            for x, p in zip(g_t, params, strict=True)])
        return [flat], flat_t, loss

    (g0,), g_target, _ = grads(0.0)
    assert torch.equal(g0, g_target)
    (g1,), g_target1, _ = grads(0.7)
    assert not torch.equal(g1, g_target1)


@pytest.mark.parametrize("transfer", [("representation",),
                                      ("representation", "dynamics"),
                                      ("representation", "dynamics", "prediction")])
def test_variants_load_exactly_the_named_components(pipeline: dict[str, str], tmp_path: Path,
                                                    transfer: tuple[str, ...]) -> None:
    from rltransfer.agents.efficientzero.train import EZTrainer
    from rltransfer.methods.xtra.offline_loop import load_world_model

    fresh = EZTrainer(target_run(tmp_path / "fresh"))
    loaded = EZTrainer(target_run(tmp_path / "loaded", init_from=pipeline["student"],
                                  transfer=transfer))
    student, _ = load_world_model(pipeline["student"])
    for comp in COMPONENTS:
        mine = getattr(loaded.learner.network, comp).state_dict()
        source = getattr(student, comp).state_dict() if comp in transfer else \
            getattr(fresh.learner.network, comp).state_dict()
        for k, v in mine.items():
            assert torch.equal(v, source[k]), (comp, k)
    fresh.envs.close()
    loaded.envs.close()


def test_frozen_h_keeps_weights_and_batchnorm(pipeline: dict[str, str], tmp_path: Path) -> None:
    cfg = FinetuneConfig(train=target_run(tmp_path / "frozen", init_from=pipeline["student"],
                                          transfer=COMPONENTS, freeze=("representation",)),
                         sources=(pipeline["data"],))
    trainer = XTRATrainer(cfg)
    before = {k: v.clone() for k, v in trainer.learner.network.representation.state_dict().items()}
    result = trainer.run()
    assert result.num_updates > 0
    after = trainer.learner.network.representation.state_dict()
    assert any("running_mean" in k for k in before)
    for k, v in before.items():
        assert torch.equal(v, after[k]), k


def test_xtra_run_logs_eta_and_resumes(pipeline: dict[str, str], tmp_path: Path) -> None:
    run = tmp_path / "xtra"
    cfg = FinetuneConfig(train=target_run(run, init_from=pipeline["student"],
                                          eval_every_env_steps=20, transfer=COMPONENTS),
                         sources=(pipeline["data"],), offline_batch_size=4)
    assert cfg.schedule().measure_updates >= 1
    result = finetune_xtra(cfg)
    assert result.num_updates == 26  # 2 per vector step from env step 16 to 40
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert train and all(f"eta/{GAMES['asterix']}" in r for r in train)
    assert any(r["kind"] == "eta" for r in records)
    assert json.loads((run / "xtra.json").read_text())["sources"] == [pipeline["data"]]
    # another weighting in the same run directory is refused
    from rltransfer.core.run_dir import RunConflictError

    with pytest.raises(RunConflictError):
        XTRATrainer(dataclasses.replace(cfg, task_weights="constant"))
    weights = np.asarray(XTRATrainer(cfg).task_weights.eta)
    assert weights.shape == (1,)
