"""Weight transfer and freezing by component name for every agent
(rltransfer.methods.weight_transfer, rltransfer.core.checkpoint_components).

Expected values are set by hand: source tensors are filled with constants (0.5, -2.0, ...),
so a transferred tensor must hold exactly that constant and every other tensor must be
unchanged from its snapshot."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from rltransfer.agents.efficientzero.config import EfficientZeroConfig
from rltransfer.agents.efficientzero.learner import (
    COMPONENTS,
    ComponentLoadError,
    EfficientZeroLearner,
)
from rltransfer.agents.efficientzero.networks import world_model_preset
from rltransfer.agents.r2d2.config import R2D2Config
from rltransfer.agents.r2d2.learner import R2D2Agent
from rltransfer.agents.sac.config import SACConfig
from rltransfer.agents.sac.learner import SACAgent
from rltransfer.core.types import Agent
from rltransfer.errors import ComponentMismatchError, UnknownComponentError, UserError
from rltransfer.methods.weight_transfer import (
    agent_component_tensors,
    checkpoint_component_tensors,
    freeze_components,
    transfer_components,
)

torch.set_num_threads(1)


def _r2d2(seed: int = 0) -> R2D2Agent:
    torch.manual_seed(seed)
    cfg = R2D2Config(torso="mlp", feature_dim=8, hidden=8, lstm_hidden=6)
    return R2D2Agent(cfg, (2, 3, 3), 1.0, 3)


def _sac(seed: int = 0) -> SACAgent:
    torch.manual_seed(seed)
    cfg = SACConfig(hidden_dim=16, batch_size=8, augmentation="none")
    return SACAgent(cfg, (2,), 1, seed=seed)


def _ez(seed: int = 0, num_actions: int = 3) -> EfficientZeroLearner:
    torch.manual_seed(seed)
    cfg = dataclasses.replace(EfficientZeroConfig(), augmentation="none")
    return EfficientZeroLearner(cfg, world_model_preset("small"), (4, 10, 10), num_actions)


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(module: nn.Module, snap: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(v, snap[k]) for k, v in module.state_dict().items())


def _constant(module: nn.Module, comp: str, value: float) -> dict[str, torch.Tensor]:
    """``<comp>/<key>`` tensors of ``module``'s shapes, all equal to ``value`` (BatchNorm's
    integer counter: 7)."""
    return {f"{comp}/{k}": (torch.full_like(v, value) if v.is_floating_point()
                            else torch.full_like(v, 7))
            for k, v in module.state_dict().items()}


def _all_equal(module: nn.Module, value: float) -> bool:
    return all(bool((v == (value if v.is_floating_point() else 7)).all())
               for v in module.state_dict().values())


def test_every_learner_is_an_agent_with_its_component_names() -> None:
    expected = {R2D2Agent: ["torso", "core", "head"], SACAgent: ["encoder", "actor", "critic"],
                EfficientZeroLearner: ["representation", "dynamics", "prediction",
                                       "projection"]}
    for agent in (_r2d2(), _sac(), _ez()):
        assert isinstance(agent, Agent)
        assert list(agent.named_components()) == expected[type(agent)]


@pytest.mark.parametrize("make, comp, other", [
    (_r2d2, "torso", "head"), (_sac, "critic", "actor"), (_ez, "dynamics", "prediction"),
])
def test_transfer_loads_exactly_the_named_component_online_and_target(
    make: object, comp: str, other: str
) -> None:
    agent = make()  # type: ignore[operator]
    online = agent.named_components()
    before_other = _snapshot(online[other])
    transfer_components(agent, _constant(online[comp], comp, 0.5), [comp])
    assert _all_equal(online[comp], 0.5)
    assert _all_equal(agent.target_components()[comp], 0.5)
    assert _same(online[other], before_other)


def test_component_tensors_round_trip_between_two_agents() -> None:
    src, dst = _ez(seed=1), _ez(seed=2)
    transfer_components(dst, agent_component_tensors(src), ["representation", "projection"])
    for comp in ("representation", "projection"):
        assert _same(dst.named_components()[comp],
                     _snapshot(src.named_components()[comp])), comp
    assert not _same(dst.network.dynamics, _snapshot(src.network.dynamics))


def test_unknown_component_lists_the_agents_names_and_loads_nothing() -> None:
    agent = _r2d2()
    before = _snapshot(agent.online)
    tensors = _constant(agent.torso, "torso", 0.5)
    with pytest.raises(UnknownComponentError) as e:
        transfer_components(agent, tensors, ["torso", "lstm"])
    assert "'lstm'" in str(e.value) and "torso, core, head" in str(e.value)
    assert isinstance(e.value, UserError)
    assert _same(agent.online, before)
    with pytest.raises(UnknownComponentError, match="encoder, actor, critic"):
        freeze_components(_sac(), ["torso"])


def test_shape_mismatch_names_the_tensor_and_both_shapes_and_loads_nothing() -> None:
    agent = _r2d2()
    before = _snapshot(agent.online)
    tensors = {**_constant(agent.torso, "torso", 0.5), **_constant(agent.head, "head", 0.5)}
    key = next(k for k in tensors if k.startswith("head/") and tensors[k].dim() == 2)
    real = tuple(tensors[key].shape)
    tensors[key] = torch.zeros(real[0] + 1, real[1])
    with pytest.raises(ComponentMismatchError) as e:
        transfer_components(agent, tensors, ["torso", "head"])
    msg = str(e.value)
    assert key in msg and str((real[0] + 1, real[1])) in msg and str(real) in msg
    assert _same(agent.online, before)  # the torso, though it fits, was not loaded either


def test_strict_needs_every_tensor_and_non_strict_loads_those_given() -> None:
    agent = _r2d2()
    full = _constant(agent.head, "head", -2.0)
    first = sorted(full)[0]
    with pytest.raises(ComponentMismatchError, match="missing"):
        transfer_components(agent, {first: full[first]}, ["head"])
    with pytest.raises(ComponentMismatchError, match="no torso/"):
        transfer_components(agent, full, ["torso"], strict=False)
    before = _snapshot(agent.head)
    transfer_components(agent, {first: full[first]}, ["head"], strict=False)
    local = first[len("head/"):]
    for k, v in agent.head.state_dict().items():
        assert torch.equal(v, torch.full_like(v, -2.0) if k == local else before[k]), k


def test_transfer_drops_the_optimizer_moments_of_loaded_parameters() -> None:
    agent = _ez()
    # hand-made SGD momentum for one parameter of each of two components
    rep = next(agent.network.representation.parameters())
    dyn = next(agent.network.dynamics.parameters())
    for p in (rep, dyn):
        agent.optimizer.state[p] = {"momentum_buffer": torch.ones_like(p)}
    transfer_components(agent, agent_component_tensors(_ez(seed=5)), ["representation"])
    assert rep not in agent.optimizer.state
    assert torch.equal(agent.optimizer.state[dyn]["momentum_buffer"], torch.ones_like(dyn))


def test_freeze_r2d2_takes_the_module_out_of_the_optimizer() -> None:
    agent = _r2d2()
    n_torso = sum(1 for _ in agent.torso.parameters())
    n_all = sum(1 for _ in agent.online.parameters())
    freeze_components(agent, ["torso"])
    assert agent.frozen == {"torso"}
    params = [p for g in agent.optimizer.param_groups for p in g["params"]]
    assert len(params) == n_all - n_torso
    assert not any(p.requires_grad for p in agent.torso.parameters())
    freeze_components(agent, ["core"])  # adds to the frozen set
    assert agent.frozen == {"torso", "core"}


def test_frozen_sac_critic_does_not_move_while_the_actor_trains() -> None:
    agent = _sac()
    freeze_components(agent, ["critic"])
    rng = np.random.default_rng(0)
    batch = {"obs": rng.normal(size=(8, 2)).astype(np.float32),
             "next_obs": rng.normal(size=(8, 2)).astype(np.float32),
             "action": rng.uniform(-1, 1, size=(8, 1)).astype(np.float32),
             "n_step_return": rng.normal(size=8).astype(np.float32),
             "bootstrap_discount": np.full(8, 0.99, dtype=np.float32)}
    critic, actor = _snapshot(agent.critic), _snapshot(agent.actor)
    agent.update(batch)
    assert _same(agent.critic, critic)
    assert not _same(agent.actor, actor)
    meta = agent.state_meta()
    assert meta["frozen"] == ["critic"]
    restored = _sac(seed=9)
    restored.load_state_tensors(agent.state_tensors(), meta)
    # state SAC: no encoder parameters, so with the critic frozen it has no critic optimizer
    assert restored.frozen == {"critic"} and restored.critic_optimizer is None
    assert not any(p.requires_grad for p in restored.critic.parameters())


def test_freezing_the_sac_encoder_freezes_convs_and_head() -> None:
    agent = _sac()
    freeze_components(agent, ["encoder"])
    assert (agent.encoder_frozen, agent._frozen_head) == (True, True)
    agent.set_frozen(set())
    assert (agent.encoder_frozen, agent._frozen_head, agent.frozen) == (False, False, set())


def test_ez_load_components_keeps_its_error_and_freezes() -> None:
    src, dst = _ez(seed=1), _ez(seed=2)
    tensors = {f"x/{k}": v for k, v in agent_component_tensors(src).items()}
    dst.load_components(tensors, ["representation"], freeze=["representation"], prefix="x/")
    assert dst.frozen == {"representation"}
    assert _same(dst.network.representation, _snapshot(src.network.representation))
    with pytest.raises(ComponentLoadError, match="unknown components"):
        dst.load_components(tensors, ["value"], prefix="x/")
    other = _ez(num_actions=5)
    with pytest.raises(ComponentLoadError, match=r"prediction/.*\(3.*\(5"):
        other.load_components(tensors, ["prediction"], prefix="x/")
    assert set(COMPONENTS) == set(dst.named_components())


def test_checkpoint_component_tensors_reads_each_agents_layout() -> None:
    a, b, c, d = (torch.tensor([float(i)]) for i in range(4))
    tensors = {
        "policy/torso.net.0.weight": a,  # R2D2
        "agent/online.encoder.convs.0.weight": b,  # SAC
        "agent/target.encoder.convs.0.weight": d,
        "agent/optimizer.critic.online.critic.q1.0.weight.exp_avg": d,
        "representation/layers.0.weight": c,  # EfficientZero
        "target/representation/layers.0.weight": d,
        "optimizer/representation/layers.0.weight/momentum_buffer": d,
        "learner/num_updates": d, "rng/torch": d, "replay/obs": d, "selfplay/x.y": d,
    }
    assert checkpoint_component_tensors(tensors) == {
        "torso/net.0.weight": a, "encoder/convs.0.weight": b, "representation/layers.0.weight": c,
    }
