"""XTRA's offline stages on the one training loop (:class:`~rltransfer.core.loop.TrainingLoop`).

An offline stage has no env to step: :class:`OfflineTrainer` runs the loop with
``num_envs = 1`` and one update per "env step", so the loop's budget, replay ratio, progress
bar, NaN guard, metrics (``metrics.jsonl`` + TensorBoard), evaluation and checkpoint cadences,
resume and ``final/`` all count **learner updates**. Evaluation plays the real task envs
(greedy search over the task's legal ids:
:class:`~rltransfer.agents.efficientzero.actor.SearchPolicy` with a
:class:`~rltransfer.agents.efficientzero.shared_space.GameAdapter`).

Checkpoints hold the learner's state (networks, target network, SGD momentum, counters); the
offline datasets are reread from their directories, never copied. ``final/`` holds the world
model's components with an EfficientZero ``architecture`` (so ``train-ez --init-from`` and
:func:`load_world_model` read it) and the ``action_space`` of every task.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from rltransfer.agents.efficientzero.actor import SearchPolicy
from rltransfer.agents.efficientzero.config import EZTrainConfig, ez_env_kwargs
from rltransfer.agents.efficientzero.learner import EfficientZeroLearner
from rltransfer.agents.efficientzero.networks import (
    EfficientZeroNet,
    WorldModelConfig,
    world_model_preset,
)
from rltransfer.agents.efficientzero.shared_space import GameAdapter
from rltransfer.core.checkpoint import CheckpointError
from rltransfer.core.config import from_dict, to_dict
from rltransfer.core.loop import TrainingLoop
from rltransfer.core.metrics import MetricsLogger
from rltransfer.core.run_dir import prepare_run_dir
from rltransfer.core.schedule import LoopSchedule, ReplayRatio
from rltransfer.envs import env_spec, make_env
from rltransfer.envs.shared_actions import ActionSpace, action_space_for, local_action_space
from rltransfer.evaluation.protocol import eval_env_kwargs, evaluate_policy
from rltransfer.methods.weight_transfer import load_component_tensors
from rltransfer.methods.xtra.config import OfflineStageConfig
from rltransfer.methods.xtra.offline_batches import OfflineBatches
from rltransfer.replay.offline import OfflineDataset, OfflineDatasetError

if TYPE_CHECKING:
    from gymnasium.vector import VectorEnv

__all__ = ["OfflineTrainer", "evaluate_on_task", "load_world_model", "task_eval_kwargs"]


class _NoEnvs:
    """The loop closes ``envs`` at the end; an offline stage has none."""

    def close(self) -> None:
        return None


class _OfflineData:
    """The loop asks its replay whether it can sample; offline data always can."""

    def can_sample(self) -> bool:
        return True

    def state_tensors(self) -> dict[str, np.ndarray]:
        return {}


def task_eval_kwargs(env_id: str, train_kwargs: Mapping[str, Any] | None = None,
                     frame_shape: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """``make_env`` settings of the evaluation env of ``env_id``: the evaluation protocol
    (:func:`~rltransfer.evaluation.protocol.eval_env_kwargs`) applied to ``train_kwargs``, the
    training env's settings (a dataset's ``info["env_kwargs"]``, or
    :func:`~rltransfer.agents.efficientzero.config.ez_env_kwargs` of a run's config).

    None: an EfficientZero run's training env with the suite's defaults, except that on
    pixel suites (Atari) ``frame_shape`` (the data's one-frame ``(C, H, W)``, e.g. a Minari
    dataset that recorded no settings) sets the frame size ``H`` and grayscale ``C == 1``, so
    96x96 RGB data are evaluated on 96x96 RGB frames. Sticky actions and the episode cap stay
    the suite's defaults when unrecorded.
    """
    if train_kwargs is None:
        train_kwargs = ez_env_kwargs(EZTrainConfig(env_id=env_id))
        if frame_shape is not None and env_spec(env_id).suite == "atari":
            c, h, _ = frame_shape
            train_kwargs.update(frame_size=int(h), grayscale=int(c) == 1)
    return eval_env_kwargs(train_kwargs)


def evaluate_on_task(network: EfficientZeroNet, env_id: str, frame_stack: int, mcts: Any, *,
                     episodes: int, seed: int, device: str = "cpu",
                     env_kwargs: Mapping[str, Any] | None = None,
                     frame_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Greedy returns ``float64[episodes]`` of ``network`` (union or local width) on
    ``env_id`` (its shared action space): the env's own channels padded to the network's,
    the search masked to the legal ids at every node (:meth:`GameAdapter.for_network`).
    ``env_kwargs``: the training env's settings (:func:`task_eval_kwargs`); evaluation drops
    life-loss terminals. ``frame_shape``: the training data's one-frame ``(C, H, W)``; the
    evaluation env must produce the same.

    Raises:
        ActionSpaceMismatchError: the network's width is neither the game's ``L`` nor its
            union's ``U``.
        OfflineDatasetError: the evaluation env's frames differ from ``frame_shape``.
    """
    kwargs = task_eval_kwargs(env_id, env_kwargs, frame_shape)
    envs = make_env(env_id, 1, seed, **kwargs)
    shape = envs.single_observation_space.shape
    envs.close()
    assert shape is not None
    if frame_shape is not None and tuple(shape) != tuple(frame_shape):
        raise OfflineDatasetError(
            f"{env_id}: the data's frames are {tuple(frame_shape)} but its evaluation env "
            f"(settings {kwargs}) gives {tuple(shape)}; record the training env's settings in "
            "the dataset's info['env_kwargs'] (frame_size, grayscale, sticky_action_prob, "
            "max_episode_frames)")
    adapter = GameAdapter.for_network(action_space_for(env_id), network.num_actions,
                                      network.obs_shape, int(shape[0]), frame_stack)
    policy = SearchPolicy(network, mcts, network.num_actions, device=device,
                          deterministic=True, seed=seed, adapter=adapter)
    return evaluate_policy(policy, env_id, num_episodes=episodes, seed=seed,
                           frame_stack=frame_stack, num_envs=min(episodes, 8),
                           env_kwargs=kwargs)


def load_world_model(path: str | Path, device: str = "cpu"
                     ) -> tuple[EfficientZeroNet, dict[str, Any]]:
    """The world model saved in an EfficientZero run, an XTRA stage's run, or one of their
    checkpoint directories (a run resolves to ``final/``, else its latest checkpoint), in
    eval mode with gradients off.

    Returns:
        ``(network, meta)``: ``meta`` is the checkpoint's ``meta.json``.

    Raises:
        CheckpointError: nothing readable there, or not an EfficientZero world model.
        ComponentLoadError-like ``RuntimeError``: tensors that do not fit the recorded sizes.
    """
    components, meta, ckpt = load_component_tensors(path)
    arch = meta.get("architecture") or {}
    if arch.get("kind") != "efficientzero":
        raise CheckpointError(f"{ckpt} holds no EfficientZero world model (architecture kind "
                              f"{arch.get('kind')!r})")
    net_cfg = from_dict(WorldModelConfig, dict(arch["net_config"]), where=f"{ckpt}")
    net = EfficientZeroNet(net_cfg, tuple(arch["obs_shape"]), int(arch["num_actions"]))
    for comp in EfficientZeroNet.COMPONENTS:
        head = f"{comp}/"
        getattr(net, comp).load_state_dict(
            {k[len(head):]: v for k, v in components.items() if k.startswith(head)})
    net.to(device).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, meta


class OfflineTrainer(TrainingLoop):
    """An offline EfficientZero stage on the training loop (see the module docstring). A
    subclass builds its :class:`OfflineBatches` and calls :meth:`open_offline`, then
    implements :meth:`make_batch` (and ``stage``)."""

    stage = "offline"
    tasks: list[OfflineBatches]
    learner: EfficientZeroLearner

    def open_offline(self, cfg: OfflineStageConfig, datasets: list[OfflineDataset],
                     num_actions: int) -> None:
        """Check the config and run directory, seed, build the tasks' batches and a fresh
        learner of width ``num_actions``; the caller writes the run directory last
        (:meth:`finish_setup`).

        Raises:
            ConfigError: an invalid config. RunConflictError: the run dir holds another run.
        """
        cfg.validate()
        self.open_run(cfg)
        self.envs = cast("VectorEnv", _NoEnvs())  # closed by the loop; nothing to step
        self.replay = _OfflineData()
        self.datasets = datasets
        self.tasks = [OfflineBatches(
            d, cfg.mcts, discount=float(cfg.learner.discount),
            value_prefix_horizon=cfg.mcts.value_prefix_horizon,
            unroll_steps=cfg.learner.unroll_steps, td_steps=cfg.learner.td_steps,
            reanalyse=cfg.reanalyse, frame_stack=cfg.frame_stack, channels=cfg.channels,
            device=cfg.device) for d in datasets]
        first = self.tasks[0]
        shapes = {(t.frame_channels, t.frame_stack, *t.replay.frame_shape[1:])
                  for t in self.tasks}
        if len(shapes) != 1:
            raise CheckpointError(
                f"the datasets' frames differ after padding ({sorted(shapes)}); set channels "
                "to the largest channel count (MinAtar: 10) and use one frame stack")
        self.frame_stack = first.frame_stack
        _, h, w = first.replay.frame_shape
        self.frame_shape = (first.frame_channels, int(h), int(w))
        self.obs_shape = (first.frame_channels * self.frame_stack, int(h), int(w))
        self.net_config = dataclasses.replace(
            world_model_preset(cfg.net_preset), obs_scale=float(env_spec(first.env_id).obs_scale))
        self.num_actions = int(num_actions)
        self.learner = EfficientZeroLearner(cfg.learner, self.net_config, self.obs_shape,
                                            self.num_actions, device=cfg.device,
                                            seed=cfg.seed + 104_729)
        self.init_loop(LoopSchedule(
            total_env_steps=cfg.num_updates, num_envs=1, replay_ratio=ReplayRatio(1, 1),
            learning_starts_env_steps=0, eval_every_env_steps=cfg.eval_every_updates,
            checkpoint_every_env_steps=cfg.checkpoint_every_updates,
            keep_checkpoints=cfg.keep_checkpoints, checkpoint_replay=False,
            run_name=Path(cfg.run_dir).name, progress=cfg.progress,
        ), tensorboard=cfg.tensorboard)

    def finish_setup(self) -> None:
        """The first write to the run directory (after everything was validated)."""
        prepare_run_dir(self.cfg, self.cfg.run_dir)

    # ------------------------------------------------------------------ loop hooks
    def start_collecting(self) -> None:
        return None

    def collect_step(self, logger: MetricsLogger) -> None:
        return None

    def make_batch(self) -> Any:
        """The next :class:`~rltransfer.agents.efficientzero.batch.EZBatch`."""
        raise NotImplementedError

    def update(self) -> dict[str, float]:
        """One EfficientZero update (:meth:`EfficientZeroLearner.update`) on
        :meth:`make_batch`."""
        return self.learner.update(self.make_batch()).metrics

    def evaluate(self, logger: MetricsLogger) -> float:
        """Greedy returns on every task's env (the one its dataset came from:
        ``info["env_kwargs"]`` when recorded; ``eval_task`` records, one per task); the
        ``eval`` record holds the per-task means (its mean: the mean over tasks)."""
        cfg = self.cfg
        means = []
        for data in self.datasets:
            returns = evaluate_on_task(
                self.learner.network, data.env_id, self.frame_stack, cfg.mcts,
                episodes=cfg.eval_episodes, seed=cfg.seed + 1_000_003 + self.env_steps,
                device=cfg.device, env_kwargs=data.info.get("env_kwargs"),
                frame_shape=data.obs_shape)
            means.append(float(np.mean(returns)))
            game = data.env_id.split("/")[-1]
            logger.log("eval_task", self.env_steps, task=data.env_id, return_mean=means[-1],
                       returns=[float(r) for r in returns], **{f"return_{game}": means[-1]})
        return self.log_eval(logger, np.asarray(means))

    # ------------------------------------------------------------------ checkpoints
    def architecture(self) -> dict[str, Any]:
        """An EfficientZero architecture record (read by ``--init-from`` and
        :func:`load_world_model`) plus the stage and its tasks."""
        first = self.datasets[0]
        return {
            "kind": "efficientzero",
            "env_id": first.env_id,
            "obs_shape": list(self.obs_shape),
            "frame_shape": list(self.frame_shape),
            "frame_stack": self.frame_stack,
            "obs_scale": env_spec(first.env_id).obs_scale,
            "num_actions": self.num_actions,
            "net_preset": self.cfg.net_preset,
            "net_config": to_dict(self.net_config),
            "learner_config": to_dict(self.cfg.learner),
            "mcts_config": to_dict(self.cfg.mcts),
            "xtra_stage": self.stage,
            "action_space": self.network_space().to_json(),
            "tasks": [d.env_id for d in self.datasets],
            "action_spaces": [d.action_space.to_json() for d in self.datasets],
        }

    def network_space(self) -> ActionSpace:
        """The network's own action space: the whole union (every id legal) for a
        union-width network, else the local space of its width (a teacher)."""
        space = self.datasets[0].action_space
        if self.num_actions == space.union_size and space.suite != "local":
            return ActionSpace(space.suite, space.names, tuple(range(space.union_size)))
        return local_action_space(self.num_actions)

    def final_tensors(self) -> dict[str, Any]:
        """The world model's components (``representation/`` ... ``projection/``)."""
        heads = tuple(f"{c}/" for c in EfficientZeroNet.COMPONENTS)
        return {k: v for k, v in self.learner.state_tensors().items() if k.startswith(heads)}

    def checkpoint_meta(self, final: bool) -> dict[str, Any]:
        return {} if final else {"learner_state": self.learner.state_meta()}

    def state_tensors(self) -> dict[str, Any]:
        return dict(self.learner.state_tensors())

    def load_state_tensors(self, tensors: dict[str, torch.Tensor],
                           meta: dict[str, Any]) -> None:
        self.learner.load_state_tensors(
            {k: v for k, v in tensors.items() if not k.startswith(("rng/", "replay/"))},
            meta["learner_state"])
