"""Weight transfer (Campos et al. 2021, Sec. 5 and Figure 6): partial init (torso + core) and
full init, also combined with Behavior Transfer's extra action a+ (issue 10, items 7 and 8)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from rltransfer.agents.agent_policy import agent_from_checkpoint, policy_tensors
from rltransfer.agents.r2d2.config import R2D2Config, TrainConfig
from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.agents.r2d2.train import Trainer, train
from rltransfer.agents.r2d2.transfer import head_output_layer, initialise_from
from rltransfer.core.checkpoint import CheckpointError, save_checkpoint
from rltransfer.core.config import to_dict

OBS = (2, 3, 3)
SMALL = dict(torso="mlp", feature_dim=8, hidden=8, lstm_hidden=6)


def _agent(cfg: R2D2Config, num_actions: int = 3, seed: int = 0) -> R2D2Agent:
    torch.manual_seed(seed)
    return R2D2Agent(cfg, OBS, 1.0, num_actions, num_env_actions=3)


def _save(tmp_path: Path, agent: R2D2Agent) -> Path:
    arch = {"kind": "r2d2", "env_id": "test", "task": None, "obs_shape": list(OBS),
            "frame_shape": list(OBS), "frame_stack": 1, "obs_scale": 1.0,
            "num_actions": agent.num_actions, "num_env_actions": agent.num_env_actions,
            "agent_config": to_dict(agent.config)}
    return save_checkpoint(tmp_path / "final", dict(policy_tensors(agent)),
                           {"architecture": arch})


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("core", ["feedforward", "lstm"])
@pytest.mark.parametrize("dueling", [True, False])
def test_full_init_with_bt_loads_the_action_rows_and_keeps_a_plus_fresh(
        tmp_path: Path, core: str, dueling: bool) -> None:
    cfg = R2D2Config(core=core, dueling=dueling, **SMALL)  # type: ignore[arg-type]
    pre = _agent(cfg, seed=1)
    path = _save(tmp_path, pre)
    new = _agent(cfg, num_actions=4, seed=2)  # |A| = 3 plus a+
    fresh = _snapshot(new.head)
    initialise_from(new, path, "full", 3)
    out = "advantage.2" if dueling else "net.2"
    assert head_output_layer(new) == out
    for name in ("torso", "core"):
        for k, v in pre.online[name].state_dict().items():
            assert torch.equal(new.online[name].state_dict()[k], v), f"{name}.{k}"
    head_pre, head_new = pre.head.state_dict(), new.head.state_dict()
    for k, v in head_new.items():
        if k.startswith(out + "."):
            assert v.shape[0] == 4 and head_pre[k].shape[0] == 3
            assert torch.equal(v[:3], head_pre[k]), k          # the |A| rows: pretrained
            assert torch.equal(v[3], fresh[k][3]), k            # a+: the fresh init, kept
            assert not torch.equal(v[3], head_pre[k][2]), k     # (not a copied row)
        else:
            assert torch.equal(v, head_pre[k]), k  # value stream, hidden layers: loaded
    # The fresh row is what a new agent of that seed gets (not zeros, not a copy).
    again = _agent(cfg, num_actions=4, seed=2)
    assert torch.equal(head_new[f"{out}.weight"][3], again.head.state_dict()[f"{out}.weight"][3])
    for k, v in new.target.state_dict().items():  # target follows the online network
        assert torch.equal(v, new.online.state_dict()[k]), k


def test_dueling_q_values_of_the_env_actions_shift_by_one_constant(tmp_path: Path) -> None:
    # Q = V + A - mean(A): the mean now runs over |A| + 1 advantages, so every env action's
    # Q moves by the same (mean_3 - mean_4) and the greedy env action is unchanged.
    cfg = R2D2Config(**SMALL)
    pre = _agent(cfg, seed=1)
    path = _save(tmp_path, pre)
    new = _agent(cfg, num_actions=4, seed=2)
    initialise_from(new, path, "full", 3)
    obs = np.random.default_rng(0).integers(0, 2, (5, *OBS), dtype=np.uint8)
    q_pre, q_new = pre.q_values(obs), new.q_values(obs)
    with torch.no_grad():
        adv = new.head.advantage(new.core(new.torso(torch.from_numpy(obs)), None)[0]).numpy()
    shift = adv[:, :3].mean(axis=1) - adv.mean(axis=1)
    np.testing.assert_allclose(q_new[:, :3], q_pre + shift[:, None], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(q_new[:, :3].argmax(axis=1), q_pre.argmax(axis=1))


def test_partial_init_of_a_recurrent_agent_loads_torso_and_lstm(tmp_path: Path) -> None:
    cfg = R2D2Config(core="lstm", **SMALL)  # type: ignore[arg-type]
    pre = _agent(cfg, seed=1)
    path = _save(tmp_path, pre)
    new = _agent(cfg, num_actions=4, seed=2)
    fresh = _snapshot(new.head)
    initialise_from(new, path, "partial", 3)
    lstm_keys = [k for k in new.core.state_dict() if "lstm" in k or "weight_ih" in k]
    assert lstm_keys, "the recurrent core has LSTM weights"
    for name in ("torso", "core"):
        for k, v in pre.online[name].state_dict().items():
            assert torch.equal(new.online[name].state_dict()[k], v), f"{name}.{k}"
    for k, v in new.head.state_dict().items():
        assert torch.equal(v, fresh[k]), k  # the head stays as initialised


def test_full_init_with_a_bad_head_changes_nothing(tmp_path: Path) -> None:
    pre = _agent(R2D2Config(**{**SMALL, "hidden": 6}), seed=1)  # type: ignore[arg-type]
    path = _save(tmp_path, pre)
    new = _agent(R2D2Config(**SMALL), num_actions=4, seed=2)  # type: ignore[arg-type]
    before = _snapshot(new.online)
    with pytest.raises(CheckpointError, match="head"):
        initialise_from(new, path, "full", 3)
    for k, v in new.online.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_trainer_combines_full_init_with_bt(tmp_path: Path) -> None:
    base = TrainConfig(
        env_id="MiniGrid-Empty-5x5-v0", num_envs=2, total_env_steps=40,
        learning_starts_env_steps=20, eval_every_env_steps=10**9, eval_episodes=1,
        checkpoint_every_env_steps=10**9, tensorboard=False, progress=False,
        replay_capacity_env_steps=200, agent=R2D2Config(batch_size=4, **SMALL),  # type: ignore[arg-type]
    )
    train(dataclasses.replace(base, run_dir=str(tmp_path / "pre")))
    trainer = Trainer(dataclasses.replace(base, run_dir=str(tmp_path / "bt"), explore="bt",
                                          prior=str(tmp_path / "pre"), init="full"))
    pretrained, _ = agent_from_checkpoint(tmp_path / "pre")
    w_new = trainer.agent.head.state_dict()["advantage.2.weight"]
    w_pre = pretrained.head.state_dict()["advantage.2.weight"]
    assert trainer.agent.num_actions == w_pre.shape[0] + 1
    assert torch.equal(w_new[:-1], w_pre)


def test_load_policy_tensors_refuses_other_shapes_and_loads_nothing(tmp_path: Path) -> None:
    from rltransfer.agents.agent_policy import load_policy_tensors

    cfg = R2D2Config(**SMALL)
    src = _agent(cfg, seed=1)
    tensors = dict(policy_tensors(src))
    dst = _agent(cfg, seed=2)
    before = {name: _snapshot(m) for name, m in dst.named_modules_for_transfer().items()}
    bad = dict(tensors)
    key = next(k for k in bad if k.startswith("policy/head."))
    bad[key] = torch.zeros((*bad[key].shape, 2))
    with pytest.raises(CheckpointError, match="head"):
        load_policy_tensors(dst, bad, modules=("torso", "core", "head"), source="ckpt")
    for name, module in dst.named_modules_for_transfer().items():  # nothing was copied
        for k, v in module.state_dict().items():
            assert torch.equal(v, before[name][k])
    load_policy_tensors(dst, tensors, modules=("torso", "core", "head"), source="ckpt")
    for k, v in dst.named_modules_for_transfer()["torso"].state_dict().items():
        assert torch.equal(v, tensors[f"policy/torso.{k}"])
    for k, v in dst.target_components()["head"].state_dict().items():  # target follows
        assert torch.equal(v, tensors[f"policy/head.{k}"])
