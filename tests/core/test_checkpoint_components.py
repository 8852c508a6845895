"""core/checkpoint_components.py: reading saved networks and optimizer moments back, with
every problem named before anything is loaded."""

from __future__ import annotations

import torch
from torch import nn

from rltransfer.core.checkpoint_components import (
    component_tensors,
    load_network_tensors,
    load_optimizer_state,
    optimizer_tensors,
    read_network_tensors,
    read_optimizer_tensors,
    unexpected_tensors,
)


def _nets(seed: int) -> dict[str, nn.Module]:
    torch.manual_seed(seed)
    return {"online.": nn.Linear(3, 2), "target.": nn.Linear(3, 2)}


def test_network_tensors_round_trip_and_problems() -> None:
    src, dst = _nets(0), _nets(1)
    saved = {f"{p}{k}": v for p, m in src.items() for k, v in m.state_dict().items()}
    states, problems = read_network_tensors(saved, dst)
    assert problems == [] and set(states) == {"online.", "target."}
    load_network_tensors(dst, states)
    for p in src:
        for k, v in src[p].state_dict().items():
            assert torch.equal(dst[p].state_dict()[k], v)
    bad = dict(saved, **{"online.weight": torch.zeros(4, 3)})
    del bad["target.bias"]
    _, problems = read_network_tensors(bad, dst)
    assert problems == ["online.weight: saved (4, 3) vs this agent (2, 3)",
                        "missing ['target.bias']"]


def test_optimizer_tensors_round_trip_and_unexpected_names() -> None:
    net = nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    names = {id(p): f"lin.{n}" for n, p in net.named_parameters()}
    saved = optimizer_tensors(opt, names, "optimizer.")
    moments, problems = read_optimizer_tensors(saved, "optimizer.", set(names.values()))
    assert problems == [] and set(moments) == {"lin.weight", "lin.bias"}
    assert set(moments["lin.weight"]) == {"exp_avg", "exp_avg_sq", "step"}
    fresh = torch.optim.Adam(net.parameters())
    load_optimizer_state(fresh, names, moments)
    assert torch.equal(fresh.state[net.weight]["exp_avg"], opt.state[net.weight]["exp_avg"])
    _, problems = read_optimizer_tensors(dict(saved, **{"optimizer.x.step": torch.ones(())}),
                                         "optimizer.", set(names.values()))
    assert problems == ["unexpected optimizer.x.step"]


def test_unexpected_tensors_skips_known_prefixes_and_keys() -> None:
    keys = ["online.w", "optimizer.a.step", "num_updates", "stray", "targetx"]
    assert unexpected_tensors(keys, ("online.", "optimizer."), ("num_updates",)) == [
        "unexpected stray", "unexpected targetx"]
    assert component_tensors({"a": nn.Linear(1, 1)}).keys() == {"a/weight", "a/bias"}
