from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch

from rltransfer.agents.efficientzero.augmentation import (
    augment_observations,
    scale_intensity,
    shift_and_crop,
)
from rltransfer.agents.efficientzero.config import EfficientZeroConfig, learning_rate_at
from rltransfer.agents.efficientzero.learner import (
    COMPONENTS,
    BatchError,
    ComponentLoadError,
    EfficientZeroLearner,
    EZBatch,
    NonFiniteLossError,
)
from rltransfer.agents.efficientzero.networks import world_model_preset
from rltransfer.core.checkpoint import load_checkpoint, save_checkpoint
from rltransfer.core.config import ConfigError, from_dict, to_dict

torch.set_num_threads(1)
OBS = (4, 10, 10)
A = 3


def make_batch(b: int = 8, k: int = 5, seed: int = 0) -> EZBatch:
    g = torch.Generator().manual_seed(seed)
    return EZBatch(
        obs=(torch.rand(b, *OBS, generator=g) < 0.3).to(torch.uint8),
        future_obs=(torch.rand(b, k, *OBS, generator=g) < 0.3).to(torch.uint8),
        actions=torch.randint(0, A, (b, k), generator=g),
        target_value_prefixes=torch.rand(b, k, generator=g) * 3.0,
        target_values=torch.rand(b, k + 1, generator=g) * 6.0 - 1.0,
        target_policies=torch.softmax(2.0 * torch.randn(b, k + 1, A, generator=g), -1),
        mask=torch.ones(b, k + 1),
        weights=torch.rand(b, generator=g) + 0.5,
        indices=np.arange(b, dtype=np.int64),
    )


def make_learner(seed: int = 0, **overrides: Any) -> EfficientZeroLearner:
    """A small learner; no augmentation unless ``augmentation=...`` is given."""
    torch.manual_seed(seed)
    overrides.setdefault("augmentation", "none")
    cfg = dataclasses.replace(EfficientZeroConfig(), lr_warmup_updates=0, lr=0.05, **overrides)
    return EfficientZeroLearner(cfg, world_model_preset("small"), OBS, A, seed=seed)


def params_of(learner: EfficientZeroLearner, comp: str) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in getattr(learner.network, comp).state_dict().items()}


def test_config_defaults_are_the_paper_values() -> None:
    cfg = EfficientZeroConfig()
    assert (cfg.unroll_steps, cfg.td_steps, cfg.value_prefix_horizon) == (5, 5, 5)
    assert (cfg.value_prefix_loss_coef, cfg.policy_loss_coef, cfg.value_loss_coef,
            cfg.consistency_loss_coef) == (1.0, 1.0, 0.25, 2.0)
    assert (cfg.lr, cfg.momentum, cfg.weight_decay, cfg.max_grad_norm) == (0.2, 0.9, 1e-4, 5.0)
    assert cfg.target_update_interval_updates == 200
    assert math.isclose(cfg.discount, 0.997**4)
    # public EfficientZero: --augmentation shift intensity, pad 4, scale 0.05
    assert (cfg.augmentation, cfg.augmentation_shift_pad,
            cfg.augmentation_intensity_scale) == ("shift_intensity", 4, 0.05)
    assert cfg.augments and not dataclasses.replace(cfg, consistency_loss_coef=0.0).augments
    assert from_dict(EfficientZeroConfig, to_dict(cfg)) == cfg


def test_config_validation_names_every_bad_field() -> None:
    with pytest.raises(ConfigError, match=r"unroll_steps must be >= 1.*lr must be > 0"):
        EfficientZeroConfig(unroll_steps=0, lr=-1.0)
    with pytest.raises(ConfigError, match="momentum must be in"):
        EfficientZeroConfig(momentum=1.0)
    bad_mode: Any = "other"
    with pytest.raises(ConfigError, match="gradient_scale_mode"):
        EfficientZeroConfig(gradient_scale_mode=bad_mode)
    with pytest.raises(ConfigError, match="consistency_loss_coef"):
        EfficientZeroConfig(consistency_loss_coef=float("nan"))
    with pytest.raises(ConfigError, match="unknown"):
        from_dict(EfficientZeroConfig, {"unroll_step": 5})
    bad_aug: Any = "crop"
    with pytest.raises(ConfigError, match="augmentation must be one of"):
        EfficientZeroConfig(augmentation=bad_aug)
    with pytest.raises(ConfigError, match="augmentation_shift_pad"):
        EfficientZeroConfig(augmentation_shift_pad=-1)


def test_learning_rate_schedule_hand_values() -> None:
    cfg = EfficientZeroConfig()
    assert math.isclose(learning_rate_at(cfg, 0), 0.2 / 1000)
    assert math.isclose(learning_rate_at(cfg, 499), 0.1)
    assert math.isclose(learning_rate_at(cfg, 999), 0.2)
    assert math.isclose(learning_rate_at(cfg, 100_999), 0.2)
    assert math.isclose(learning_rate_at(cfg, 101_000), 0.02)
    no_warmup = EfficientZeroConfig(lr_warmup_updates=0, lr_decay_interval_updates=10)
    assert [round(learning_rate_at(no_warmup, u), 6) for u in (0, 9, 10, 25)] == \
        [0.2, 0.2, 0.02, 0.002]


def test_first_update_losses_and_priorities_hand_computed() -> None:
    # Zero-initialised head outputs: uniform logits and value 0 at the start, so
    # CE(value) = log(41) per step, CE(prefix) = log(21), CE(policy) = log(3) per masked step,
    # and priorities = |0 - z_0| + eps.
    learner = make_learner()
    batch = make_batch()
    batch.mask[:4, 3:] = 0.0  # episode ends for half of the batch
    batch.target_policies[:4, 3:] = 0.0
    result = learner.update(batch)
    metrics, prio = result.metrics, result.priorities
    assert math.isclose(metrics["value_loss"], 6 * math.log(41), rel_tol=1e-5)
    assert math.isclose(metrics["value_prefix_loss"], 5 * math.log(21), rel_tol=1e-5)
    mean_steps = float(batch.mask.sum(1).mean())
    assert math.isclose(metrics["policy_loss"], mean_steps * math.log(3), rel_tol=1e-5)
    assert prio.shape == (8,) and prio.dtype == np.float64
    expected = batch.target_values[:, 0].abs().double().numpy() + 1e-6
    np.testing.assert_allclose(prio, expected, atol=1e-4)
    assert metrics["lr"] == 0.05 and learner.num_updates == 1
    # total = mean_b w_b (0.25 * value + 1.0 * policy + 1.0 * prefix [+ 2.0 * consistency])
    no_cons = make_learner(consistency_loss_coef=0.0).update(batch).metrics
    per_sample = (0.25 * 6 * math.log(41) + 5 * math.log(21)
                  + batch.mask.sum(1).double() * math.log(3))
    expected_loss = float((batch.weights.double() * per_sample).mean())
    assert math.isclose(no_cons["loss"], expected_loss, rel_tol=1e-5)


@pytest.mark.slow
def test_loss_decreases_on_a_fixed_batch() -> None:
    learner = make_learner()
    batch = make_batch(b=8)
    first = learner.update(batch).metrics
    for _ in range(48):
        result = learner.update(batch)
        last, prio = result.metrics, result.priorities
    assert last["loss"] < 0.5 * first["loss"], (first, last)
    assert last["value_loss"] < first["value_loss"]
    assert last["value_prefix_loss"] < first["value_prefix_loss"]
    assert last["consistency_loss"] < first["consistency_loss"] - 0.5
    # value predictions moved towards the targets -> smaller priorities
    assert prio.mean() < np.abs(batch.target_values[:, 0].numpy()).mean()


def test_zero_weight_samples_do_not_affect_the_update() -> None:
    batch = make_batch()
    batch.weights[5] = 0.0
    other = dataclasses.replace(
        batch,
        target_values=batch.target_values.clone(),
        target_policies=batch.target_policies.clone(),
        target_value_prefixes=batch.target_value_prefixes.clone(),
    )
    other.target_values[5] = 250.0
    other.target_value_prefixes[5] = -40.0
    other.target_policies[5] = torch.tensor([1.0, 0.0, 0.0])
    one, two = make_learner(), make_learner()
    m1 = one.update(batch).metrics
    m2 = two.update(other).metrics
    for comp in COMPONENTS:
        for k, v in params_of(one, comp).items():
            torch.testing.assert_close(v, params_of(two, comp)[k], msg=k)
    assert m1["loss"] == pytest.approx(m2["loss"], rel=1e-6)


def _fix_projections(learner: EfficientZeroLearner, monkeypatch: pytest.MonkeyPatch,
                     online: list[float], target: list[float]) -> None:
    """Make the online branch P(proj(s_k)) output ``online`` and the target branch
    proj(h(o_{t+k})) output ``target`` for every sample (the online output keeps a zero-valued
    dependence on the latent so that the update's backward pass is unchanged in form)."""
    proj = learner.network.projection
    on, tg = torch.tensor(online), torch.tensor(target)

    def forward(latent: torch.Tensor) -> torch.Tensor:
        return on.expand(latent.shape[0], -1) + 0.0 * latent.flatten(1).sum(1, keepdim=True)

    def project(latent: torch.Tensor) -> torch.Tensor:
        return tg.expand(latent.shape[0], -1).clone()

    monkeypatch.setattr(proj, "forward", forward)
    monkeypatch.setattr(proj, "project", project)


def test_consistency_loss_hand_computed(monkeypatch: pytest.MonkeyPatch) -> None:
    # identical directions (target 3x the online vector): -cos = -1 per unroll step, 5 steps
    batch = make_batch()
    learner = make_learner()
    _fix_projections(learner, monkeypatch, [1.0, 2.0, 0.0], [3.0, 6.0, 0.0])
    metrics = learner.update(batch).metrics
    assert metrics["consistency_loss"] == pytest.approx(-5.0, abs=1e-6)
    # the total loss holds 2.0 * (-5) per sample: compare with the hand-computed other terms
    per_sample = (0.25 * 6 * math.log(41) + 5 * math.log(21) + 6 * math.log(3) + 2.0 * -5.0)
    expected = float((batch.weights.double() * per_sample).mean())
    assert metrics["loss"] == pytest.approx(expected, rel=1e-5)
    # orthogonal: 0; at 45 degrees: -1/sqrt(2) per step
    learner = make_learner()
    _fix_projections(learner, monkeypatch, [1.0, 0.0, 0.0], [0.0, 0.0, 2.0])
    assert learner.update(batch).metrics["consistency_loss"] == pytest.approx(0.0, abs=1e-6)
    learner = make_learner()
    _fix_projections(learner, monkeypatch, [1.0, 0.0, 0.0], [1.0, 1.0, 0.0])
    assert learner.update(batch).metrics["consistency_loss"] == pytest.approx(-5 / math.sqrt(2))
    # opposite: +1 per step
    learner = make_learner()
    _fix_projections(learner, monkeypatch, [1.0, 0.0, 0.0], [-2.0, 0.0, 0.0])
    assert learner.update(batch).metrics["consistency_loss"] == pytest.approx(5.0)


def test_consistency_is_masked_by_the_transition_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    # The term of step k counts when mask[:, k-1] = 1 (the transition into t+k happened).
    # With agreeing projections every counted step contributes exactly -1.
    def consistency(batch: EZBatch) -> dict[str, float]:
        learner = make_learner()
        _fix_projections(learner, monkeypatch, [0.0, 1.0, 0.0], [0.0, 4.0, 0.0])
        return learner.update(batch).metrics

    batch = make_batch()
    batch.mask[:, 1:] = 0.0  # only step 0 inside: the transition t -> t+1 still counts
    assert consistency(batch)["consistency_loss"] == pytest.approx(-1.0)
    batch.mask[:3, :4] = 1.0  # three samples with steps 0..3 inside: k = 1..4 count
    assert consistency(batch)["consistency_loss"] == pytest.approx(-(3 * 4 + 5 * 1) / 8)
    batch.mask[:] = 0.0
    metrics = consistency(batch)
    assert metrics["consistency_loss"] == 0.0 and metrics["policy_loss"] == 0.0


def test_target_network_sync_interval() -> None:
    learner = make_learner(target_update_interval_updates=2)
    start = params_of(learner, "prediction")
    batch = make_batch()
    learner.update(batch)
    target = learner.target_network.prediction.state_dict()
    for k, v in start.items():  # not synced yet
        torch.testing.assert_close(target[k], v)
    learner.update(batch)
    online = learner.network.state_dict()
    for k, v in learner.target_network.state_dict().items():
        torch.testing.assert_close(v, online[k])
    assert not learner.target_network.training
    assert not any(p.requires_grad for p in learner.target_network.parameters())


def test_checkpoint_round_trip_is_exact(tmp_path) -> None:
    a = make_learner(target_update_interval_updates=2)
    batch = make_batch()
    for _ in range(3):
        a.update(batch)
    tensors = a.state_tensors()
    prefixes = tuple(f"{c}/" for c in COMPONENTS)
    for key in tensors:
        assert key.startswith((*prefixes, "target/", "optimizer/", "learner/")), key
    assert any(k.startswith("optimizer/dynamics/") and k.endswith("momentum_buffer")
               for k in tensors)
    to_save: dict[str, Any] = dict(tensors)
    path = save_checkpoint(tmp_path / "ckpt", to_save, {"learner": a.state_meta()})
    loaded, meta = load_checkpoint(path)
    b = make_learner(seed=123, target_update_interval_updates=2)
    b.load_state_tensors(loaded, meta["learner"])
    assert b.num_updates == 3
    for key, value in b.state_tensors().items():
        assert torch.equal(value, tensors[key]), key
    batch2 = make_batch(seed=1)
    result = a.update(batch2)
    ma, pa = result.metrics, result.priorities
    result = b.update(batch2)
    mb, pb = result.metrics, result.priorities
    assert ma == mb
    np.testing.assert_array_equal(pa, pb)
    b_tensors = b.state_tensors()
    for key, value in a.state_tensors().items():
        assert torch.equal(value, b_tensors[key]), key


def test_load_state_rejects_other_models() -> None:
    a = make_learner()
    tensors = a.state_tensors()
    other = EfficientZeroLearner(EfficientZeroConfig(), world_model_preset("small"), OBS, A + 1)
    with pytest.raises(ComponentLoadError, match="num_actions=3"):
        other.load_state_tensors(tensors, a.state_meta())
    with pytest.raises(ComponentLoadError, match="prediction/"):
        other.load_state_tensors(tensors)
    del tensors["learner/num_updates"]
    with pytest.raises(ComponentLoadError, match="missing learner/num_updates"):
        make_learner().load_state_tensors(tensors)


def test_nonfinite_loss_raises_and_changes_nothing() -> None:
    learner = make_learner()
    batch = make_batch()
    learner.update(batch)
    last = learner.network.prediction.value_mlp[-1]
    assert isinstance(last, torch.nn.Linear)
    with torch.no_grad():
        last.bias[0] = float("inf")
    before = learner.state_tensors()
    with pytest.raises(NonFiniteLossError, match="update was skipped"):
        learner.update(batch)
    after = learner.state_tensors()
    assert learner.num_updates == 1
    for key, value in before.items():
        assert torch.equal(value, after[key]) or (
            torch.isnan(value).any() and torch.allclose(value, after[key], equal_nan=True)
        ), key
    bad = make_batch()
    bad.target_values[0, 2] = float("nan")
    with pytest.raises(BatchError, match="target_values contains NaN"):
        make_learner().update(bad)


def test_batch_shape_errors() -> None:
    learner = make_learner()
    with pytest.raises(BatchError, match=r"K=5.*future_obs is \[8, 3, 4, 10, 10\]"):
        learner.update(make_batch(k=3))
    batch = make_batch()
    batch.actions = batch.actions.float()
    with pytest.raises(BatchError, match="actions must be integers"):
        learner.update(batch)


def test_load_components_one_by_one_and_freeze() -> None:
    source = make_learner(seed=1)
    source.update(make_batch())
    tensors = source.state_tensors()
    dest = make_learner(seed=2)
    dest.load_components(tensors, ["representation", "dynamics"], freeze=["representation"])
    assert dest.frozen == {"representation"}
    for comp in ("representation", "dynamics"):
        for k, v in params_of(dest, comp).items():
            assert torch.equal(v, tensors[f"{comp}/{k}"]), k
            assert torch.equal(dest.target_network.state_dict()[f"{comp}.{k}"], v)
    assert not torch.equal(params_of(dest, "prediction")["value_mlp.0.weight"],
                           tensors["prediction/value_mlp.0.weight"])
    rep = params_of(dest, "representation")
    dyn = params_of(dest, "dynamics")
    dest.update(make_batch(seed=3))
    for k, v in params_of(dest, "representation").items():  # weights and BN stats frozen
        assert torch.equal(v, rep[k]), k
    assert not torch.equal(params_of(dest, "dynamics")["conv.weight"], dyn["conv.weight"])
    assert not any(k.startswith("optimizer/representation/") for k in dest.state_tensors())
    # a prediction head for another action count does not fit; h still does
    other = EfficientZeroLearner(EfficientZeroConfig(), world_model_preset("small"), OBS, A + 2)
    with pytest.raises(ComponentLoadError, match="prediction/policy_mlp"):
        other.load_components(tensors, ["representation", "prediction"])
    other.load_components(tensors, ["representation"])
    with pytest.raises(ComponentLoadError, match="unknown components"):
        other.load_components(tensors, ["encoder"])


def test_muzero_gradient_scale_mode_differs_only_in_scale() -> None:
    batch = make_batch()
    ez = make_learner(momentum=0.0, weight_decay=0.0, max_grad_norm=1e9)
    mz = make_learner(momentum=0.0, weight_decay=0.0, max_grad_norm=1e9,
                      gradient_scale_mode="muzero")
    m_ez = ez.update(batch).metrics
    m_mz = mz.update(batch).metrics
    assert m_ez["loss"] == pytest.approx(m_mz["loss"], rel=1e-6)  # reported loss unscaled
    assert m_mz["grad_norm"] > m_ez["grad_norm"]


# ---------------------------------------------------------------------------- augmentation
def test_shift_and_crop_hand_values() -> None:
    x = torch.arange(36, dtype=torch.float32).reshape(1, 1, 6, 6)
    # pad 4 (replicate), crop at row 3, column 6 of the 14x14 padded image: source rows
    # clip(3..8 - 4) = 0,0,1,2,3,4 and columns clip(6..11 - 4) = 2,3,4,5,5,5
    out = shift_and_crop(x, torch.tensor([[3, 6]]), pad=4)
    expected = torch.tensor([
        [2, 3, 4, 5, 5, 5],
        [2, 3, 4, 5, 5, 5],
        [8, 9, 10, 11, 11, 11],
        [14, 15, 16, 17, 17, 17],
        [20, 21, 22, 23, 23, 23],
        [26, 27, 28, 29, 29, 29],
    ], dtype=torch.float32)
    torch.testing.assert_close(out[0, 0], expected)
    # offset (pad, pad) is the identity; (0, 0) moves the image down-right by 4
    two = torch.cat([x, 100 + x])
    out = shift_and_crop(two, torch.tensor([[4, 4], [0, 0]]), pad=4)
    torch.testing.assert_close(out[0], x[0])
    corner = torch.tensor([[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1]], dtype=torch.float32)
    torch.testing.assert_close(out[1, 0, 3:5], 100 + corner)  # rows 3-4 repeat row 0
    assert float(out[1, 0, 5, 5]) == 100 + 7  # source (1, 1)
    with pytest.raises(ValueError, match="offsets must lie in"):
        shift_and_crop(x, torch.tensor([[9, 0]]), pad=4)


def test_intensity_noise_hand_values() -> None:
    x = torch.full((3, 2, 2, 2), 0.5)
    out = scale_intensity(x, torch.tensor([0.3, 3.0, -5.0]), scale=0.05)
    # factors 1 + 0.05 * clip(n, -2, 2): 1.015, 1.1, 0.9 (one per sample)
    for i, factor in enumerate((1.015, 1.1, 0.9)):
        torch.testing.assert_close(out[i], torch.full((2, 2, 2), 0.5 * factor))


def test_augment_observations_one_draw_per_sample() -> None:
    g = torch.Generator().manual_seed(3)
    frame = torch.rand(16, 1, 12, 12, generator=g)
    x = torch.cat([frame, frame, frame], dim=1)  # three identical channels per sample
    gen = torch.Generator().manual_seed(0)
    out = augment_observations(x, 4, 0.05, gen)
    assert out.shape == x.shape
    torch.testing.assert_close(out[:, 1], out[:, 0])  # every channel moved/brightened alike
    torch.testing.assert_close(out[:, 2], out[:, 0])
    # the draws are the generator's: 2N offsets in [0, 8], then N normals
    gen = torch.Generator().manual_seed(0)
    offsets = torch.randint(0, 9, (16, 2), generator=gen)
    noise = torch.randn(16, generator=gen)
    by_hand = shift_and_crop(x, offsets, 4) * (1 + 0.05 * noise.clamp(-2, 2)).view(16, 1, 1, 1)
    torch.testing.assert_close(out, by_hand)
    assert len({tuple(o) for o in offsets.tolist()}) > 1  # samples get their own shifts


def _frame_sequence_batch(b: int = 4, k: int = 5, seed: int = 0) -> EZBatch:
    """A batch whose stacks come from one frame sequence per sample (OBS = 4 frames of 1
    channel): obs = frames 0..3, future_obs[:, j] = frames j+1..j+4."""
    batch = make_batch(b=b, k=k, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    frames = (torch.rand(b, k + 4, 10, 10, generator=g) < 0.4).to(torch.uint8)
    batch.obs = frames[:, 0:4].clone()
    batch.future_obs = torch.stack([frames[:, j + 1:j + 5] for j in range(k)], dim=1)
    return batch


def test_consistency_targets_share_one_draw_obs_gets_its_own() -> None:
    learner = make_learner(augmentation="shift_intensity")
    batch = _frame_sequence_batch()
    obs, future = learner.augment(batch.obs, batch.future_obs)
    assert obs.dtype == torch.float32 and future.shape == (4, 5, *OBS)
    # a frame that two target stacks share is augmented identically (one draw per sample
    # for the whole target sequence, as EZ augments o_{t+1..t+K} as one image)
    for j in range(4):
        torch.testing.assert_close(future[:, j, 1:], future[:, j + 1, :3])
    # the frame sequence of the targets is one shift + one intensity of the raw frames
    gen = torch.Generator().manual_seed(0)
    augment_observations(batch.obs.float(), 4, 0.05, gen)  # the obs draw comes first
    seq = torch.cat([batch.future_obs[:, 0], batch.future_obs[:, 1:, 3]], dim=1).float()
    by_hand = augment_observations(seq, 4, 0.05, gen)
    for j in range(5):
        torch.testing.assert_close(future[:, j], by_hand[:, j:j + 4])
    # obs gets an independent draw (public EZ: two transform calls), so frames 1..3, which
    # obs and the first target share, differ after augmentation
    assert not torch.allclose(obs[:, 1:], future[:, 0, :3])


def test_no_augmentation_when_switched_off_or_without_consistency(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import rltransfer.agents.efficientzero.augmentation as ez

    calls: list[tuple[int, ...]] = []

    def spy(x: torch.Tensor, pad: int, scale: float, gen: torch.Generator) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return augment_observations(x, pad, scale, gen)

    monkeypatch.setattr(ez, "augment_observations", spy)
    batch = make_batch()
    make_learner(augmentation="shift_intensity").update(batch)
    assert calls == [(8, *OBS), (8, 5 * OBS[0], *OBS[1:])]
    calls.clear()
    make_learner(augmentation="none").update(batch)
    make_learner(augmentation="shift_intensity", consistency_loss_coef=0.0).update(batch)
    assert calls == []
    learner = make_learner(augmentation="shift_intensity", consistency_loss_coef=0.0)
    obs, future = learner.augment(batch.obs, batch.future_obs)
    assert obs is batch.obs and future is batch.future_obs


def test_augmented_update_resumes_exactly() -> None:
    a = make_learner(augmentation="shift_intensity")
    batch = make_batch()
    a.update(batch)
    b = make_learner(seed=5, augmentation="shift_intensity")
    b.load_state_tensors(a.state_tensors(), a.state_meta())
    result = a.update(batch)
    ma, pa = result.metrics, result.priorities
    result = b.update(batch)
    mb, pb = result.metrics, result.priorities
    assert ma == mb
    np.testing.assert_array_equal(pa, pb)
    fresh = make_learner(augmentation="shift_intensity")
    fresh.load_state_tensors(a.state_tensors())
    assert fresh.update(batch).metrics == a.update(batch).metrics
