"""Encoder-pretraining experiments for pixel SAC (Kadavath et al. 2021, "Pretraining &
Reinforcement Learning: Sharpening the Axe Before Cutting the Tree").

An :class:`EncoderExperiment` pretrains a conv encoder by inverse dynamics (IK) on
random-action data of each ``pretrain_tasks`` environment (and, for the
``image_classification`` strategy, a grouped-conv encoder by image classification, Sec. 3.2),
then trains pixel SAC on each ``train_tasks`` environment from scratch and from every
pretrained encoder, several seeds each, and writes a report. Three shapes of the same
experiment:

* **per task** (``pretrain_tasks == train_tasks``, ``cross_tasks=False``): IK on task X, RL on
  task X, vs scratch (the paper's Fig. 2);
* **cross-environment matrix** (``cross_tasks=True``): IK on every task, RL on every task;
* **budget split** (``budget_split_transitions`` non-empty): a total of ``N`` agent steps,
  ``T`` of them spent collecting IK data and ``N - T`` on RL, for each ``T`` (``T = 0`` is
  scratch) (the paper's Sec. 4.3).

``distraction`` applies the same distracting backgrounds to pretraining, RL and evaluation:
with ``"builtin"`` every seed ``k`` gets its own clip (``distraction_seed + k``; the paper
plays one video per run) and its own IK pretraining on that clip.

Presets (registered in :mod:`rltransfer.experiments.registry`): ``ik-reacher`` (the CPU
benchmark), ``ik-dmc``, ``ik-cross``, ``ik-distracted``, ``ik-budget`` (paper scale:
N = 80k), ``ik-budget-small``, ``ik-vs-images`` (IK vs image classification vs scratch, the
paper's Sec. 4.1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

from rltransfer.agents.sac.config import SACConfig, SACTrainConfig
from rltransfer.core.config import ConfigError
from rltransfer.methods.encoder_pretraining.image_classification import ImageClassificationConfig
from rltransfer.methods.encoder_pretraining.inverse_dynamics import InverseDynamicsConfig
from rltransfer.nets.pixel_encoders import PixelEncoderConfig

ENCODER_STRATEGIES: tuple[str, ...] = (
    "scratch", "ik", "ik_frozen", "image_classification", "scratch_grouped",
)
"""``scratch``: random encoder; ``ik``: IK-pretrained encoder, finetuned by the critic;
``ik_frozen``: IK-pretrained encoder, frozen; ``image_classification``: the grouped-conv
encoder (``EncoderExperiment.images.encoder``) pretrained by image classification, finetuned;
``scratch_grouped``: that grouped encoder randomly initialised (its baseline: the paper
compares each pretraining with a baseline of the same architecture)."""

GROUPED_STRATEGIES: frozenset[str] = frozenset({"image_classification", "scratch_grouped"})
"""Strategies whose SAC encoder is ``EncoderExperiment.images.encoder``."""


@dataclass
class EncoderExperiment:
    """IK pretraining -> pixel SAC with each encoder strategy, over seeds and tasks.

    Attributes:
        name: shown in the report.
        train_tasks: DMC ids SAC is trained on (e.g. ``"DMC/reacher-easy"``).
        pretrain_tasks: DMC ids IK data is collected on; ``None`` = ``train_tasks``.
        strategies: subset of :data:`ENCODER_STRATEGIES` (per-task and matrix shapes).
        cross_tasks: train on every (pretrain task, train task) pair, not only matching ones.
        budget_split_transitions: the ``T`` values of a budget split (agent steps of IK data;
            0 = scratch); empty = no budget split (IK data is extra to ``sac.total_env_steps``).
        num_seeds: RL seeds per cell (0 .. num_seeds - 1). One IK pretraining per (task, T),
            seed ``ik.seed``, shared by the RL seeds.
        distraction: ``None``, ``"builtin"`` or a folder of frames, for pretraining, RL and
            evaluation.
        distraction_seed: the clip of seed 0; with ``"builtin"`` seed ``k`` plays clip
            ``distraction_seed + k`` in its IK pretraining, RL and evaluation (one clip per run).
        ik: base IK config (``env_id``, ``num_transitions``, ``out_dir`` set per cell).
        sac: base SAC config (``env_id``, ``seed``, ``run_dir``, encoder init set per cell);
            its ``total_env_steps`` is the RL budget, or the total ``N`` in a budget split.
        workers: RL runs in parallel (processes, one torch thread each).
        images: base image-classification config (``data_dir``, ``image_size``,
            ``images_per_datapoint``, ``out_dir`` set by the runner) of the
            ``image_classification`` strategy; its ``encoder`` (grouped, ``groups`` = frame
            stack) is also the ``scratch_grouped`` encoder.
        image_data_dir: image folder (one sub-folder per class) for ``images``; None writes
            the project's synthetic shapes
            (:func:`rltransfer.methods.encoder_pretraining.image_classification_data.
            generate_shape_images`) under ``<out>/data/shapes``.
        synthetic_classes: classes of the synthetic shapes.
        synthetic_images_per_class: images per class of the synthetic shapes.
    """

    name: str
    train_tasks: tuple[str, ...]
    pretrain_tasks: tuple[str, ...] | None = None
    strategies: tuple[str, ...] = ("scratch", "ik")
    cross_tasks: bool = False
    budget_split_transitions: tuple[int, ...] = ()
    num_seeds: int = 3
    distraction: str | None = None
    distraction_seed: int = 0
    ik: InverseDynamicsConfig = field(default_factory=InverseDynamicsConfig)
    sac: SACTrainConfig = field(default_factory=SACTrainConfig)
    workers: int = 2
    description: str = ""
    images: ImageClassificationConfig = field(default_factory=lambda: _cpu_images())
    image_data_dir: str | None = None
    synthetic_classes: int = 20
    synthetic_images_per_class: int = 100

    def __post_init__(self) -> None:
        problems = []
        unknown = set(self.strategies) - set(ENCODER_STRATEGIES)
        if unknown:
            problems.append(
                f"unknown strategies {sorted(unknown)}; choose from {list(ENCODER_STRATEGIES)}"
            )
        if not self.train_tasks:
            problems.append("train_tasks is empty")
        if any(t < 0 for t in self.budget_split_transitions):
            problems.append("budget_split_transitions must be >= 0")
        if self.budget_split_transitions and max(self.budget_split_transitions) >= int(
            self.sac.total_env_steps
        ):
            problems.append(
                f"a budget split needs every T < N = sac.total_env_steps "
                f"({self.sac.total_env_steps}); got {self.budget_split_transitions}"
            )
        if self.num_seeds < 1 or self.workers < 1:
            problems.append("num_seeds and workers must be >= 1")
        if GROUPED_STRATEGIES & set(self.strategies) and (
            self.cross_tasks or self.budget_split_transitions
        ):
            problems.append(
                "image_classification / scratch_grouped apply to the per-task shape only (not "
                "to cross_tasks or a budget split)"
            )
        if problems:
            raise ConfigError(f"invalid EncoderExperiment {self.name!r}: " + "; ".join(problems))


def _cpu_encoder() -> PixelEncoderConfig:
    # The 4-layer DrQ encoder: the paper's 11-layer encoder costs ~4x more per update on a CPU.
    return PixelEncoderConfig(kind="drq4", num_filters=32, feature_dim=50)


def _cpu_sac(env_id: str, total_env_steps: int) -> SACTrainConfig:
    """SAC sized for a 2-core CPU: 64x64 renders, batch 64, hidden 256, update every step."""
    return SACTrainConfig(
        env_id=env_id, total_env_steps=total_env_steps, render_size=64,
        agent=SACConfig(batch_size=64, hidden_dim=256, actor_lr=3e-4, critic_lr=3e-4,
                        encoder_lr=3e-4, alpha_lr=3e-4),
        encoder=_cpu_encoder(), replay_capacity_env_steps=total_env_steps,
        learning_starts_env_steps=500, eval_every_env_steps=max(500, total_env_steps // 6),
        eval_episodes=5, checkpoint_every_env_steps=max(1000, total_env_steps // 3),
        progress=False, tensorboard=False,
    )


def _cpu_images() -> ImageClassificationConfig:
    """Grouped-conv image classification sized for a CPU: the 4-layer encoder with 3 groups
    and 3x the filters (96, as the paper triples its filters for grouped convs), 10 epochs."""
    return ImageClassificationConfig(
        encoder=PixelEncoderConfig(kind="drq4", num_filters=96, feature_dim=50, groups=3),
        batch_size=64, epochs=10, progress=False, torch_threads=1,
    )


def _cpu_ik(num_transitions: int) -> InverseDynamicsConfig:
    return InverseDynamicsConfig(
        num_transitions=num_transitions, render_size=64, crop_size=None, encoder=_cpu_encoder(),
        batch_size=128, epochs=10, progress=False, torch_threads=1,
    )


def ik_reacher() -> EncoderExperiment:
    """The CPU benchmark: reacher-easy, IK-pretrained vs scratch, 3 seeds (about an hour)."""
    return EncoderExperiment(
        name="IK vs scratch on reacher-easy (CPU scale)",
        train_tasks=("DMC/reacher-easy",), strategies=("scratch", "ik"),
        ik=_cpu_ik(5_000), sac=_cpu_sac("DMC/reacher-easy", 6_000),
        description="Pixel SAC (DrQ 4-layer encoder, 64x64 renders, action repeat 4) with an "
                    "encoder pretrained by inverse dynamics on 5k random-action transitions "
                    "of the same task, vs a random encoder.",
    )


_DMC3 = ("DMC/cheetah-run", "DMC/reacher-easy", "DMC/walker-walk")


def ik_dmc() -> EncoderExperiment:
    """IK vs scratch on cheetah-run, reacher-easy and walker-walk (paper Fig. 2, CPU budget)."""
    return EncoderExperiment(
        name="IK vs scratch on three DMC tasks", train_tasks=_DMC3,
        strategies=("scratch", "ik", "ik_frozen"), ik=_cpu_ik(10_000),
        sac=_cpu_sac(_DMC3[0], 20_000),
    )


def ik_cross() -> EncoderExperiment:
    """The cross-environment matrix: IK on each task, SAC on each task."""
    return dataclasses.replace(ik_dmc(), name="IK cross-environment matrix", cross_tasks=True,
                               strategies=("scratch", "ik"))


def ik_distracted() -> EncoderExperiment:
    """IK vs scratch with the built-in distracting backgrounds in pretraining and RL."""
    return dataclasses.replace(ik_dmc(), name="IK vs scratch with distracting backgrounds",
                               distraction="builtin")


def ik_budget() -> EncoderExperiment:
    """The paper's budget split: N = 80k agent steps, T in {0, 5k, 10k, 20k} on IK data, with
    the paper's geometry (100x100 renders; RL random 84 crops, IK centre 84 crops)."""
    sac = dataclasses.replace(_cpu_sac("DMC/reacher-easy", 80_000), render_size=100,
                              encoder=PixelEncoderConfig(kind="pad11", feature_dim=100),
                              agent=SACConfig(augmentation="crop", crop_size=84))
    ik = dataclasses.replace(_cpu_ik(0), render_size=100, crop_size=84, epochs=30,
                             encoder=PixelEncoderConfig(kind="pad11", feature_dim=100))
    return EncoderExperiment(
        name="Budget split (paper scale)", train_tasks=("DMC/reacher-easy",),
        budget_split_transitions=(0, 5_000, 10_000, 20_000), ik=ik, sac=sac,
    )


def ik_budget_small() -> EncoderExperiment:
    """A CPU-sized budget split: N = 3k agent steps, T in {0, 500, 1000}."""
    return EncoderExperiment(
        name="Budget split (CPU scale)", train_tasks=("DMC/reacher-easy",),
        budget_split_transitions=(0, 500, 1_000), ik=_cpu_ik(0),
        sac=_cpu_sac("DMC/reacher-easy", 3_000), num_seeds=2,
    )


def ik_vs_images() -> EncoderExperiment:
    """IK vs image classification vs scratch (the paper's Sec. 4.1) on the three DMC tasks:
    the DrQ encoder from scratch and IK-pretrained, and the grouped encoder (3 groups, 96
    filters) from scratch and pretrained on the synthetic shape images (20 classes x 100)."""
    return EncoderExperiment(
        name="IK vs image classification vs scratch", train_tasks=_DMC3,
        strategies=("scratch", "ik", "scratch_grouped", "image_classification"),
        ik=_cpu_ik(10_000), sac=_cpu_sac(_DMC3[0], 20_000),
        description="Pixel SAC from a random encoder, an encoder pretrained by inverse "
                    "dynamics on the same task, and a grouped-conv encoder (random, or "
                    "pretrained by classifying 3 stacked synthetic shape images, the stand-in "
                    "for the paper's 100 ImageNet classes).",
    )


def __getattr__(name: str) -> dict[str, Callable[[], EncoderExperiment]]:
    """``ENCODER_RECIPES``: name -> builder of the ``encoder`` recipes of the one registry
    (:data:`rltransfer.experiments.registry.ENCODER_RECIPES`), kept for older imports."""
    if name == "ENCODER_RECIPES":
        from rltransfer.experiments.registry import ENCODER_RECIPES

        return {r.name: r.build for r in ENCODER_RECIPES}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
