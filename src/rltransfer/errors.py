"""The base classes of the errors a user can fix.

The command line (:mod:`rltransfer.cli`) prints a :class:`UserError` as one line
(``rltransfer: error: <message>``) and exits with status 2; every other exception, a
``KeyError`` or ``ValueError`` from a programming error included, keeps its traceback.

Subclasses (each also a ``ValueError``, so older ``except ValueError`` code still catches
them): ``ConfigError`` (core/config.py), ``CheckpointError`` (core/checkpoint.py),
``RunConflictError`` (core/run_dir.py), ``SpaceMismatchError`` (core/policy.py),
``UnknownEnvError`` and ``EnvOptionError`` (envs/spec.py), ``UnknownTaskError``
(envs/atari_tasks.py), ``DistractionError`` (envs/distraction_clips.py),
``ActionSpaceMismatchError`` (envs/shared_actions.py), ``OfflineDatasetError``
(replay/offline.py), ``EncoderMismatchError`` (methods/encoder_pretraining/transfer.py),
``ImageFolderError`` (methods/encoder_pretraining/image_classification_data.py),
``TaskWeightError`` (methods/xtra/task_weights.py), ``MetricsFileError``
(evaluation/report.py), ``UnknownExplorerError`` (explore/factory.py),
``UnknownEncoderKindError`` (nets/encoders.py), ``PixelEncoderConfigError``
(nets/pixel_encoders.py), ``RayClusterError`` (distributed/pool.py), ``ComponentLoadError``
(agents/efficientzero/learner.py, a ``ComponentMismatchError``), and the four below.
:class:`NonFiniteLossError`, also here, is a ``RuntimeError`` (not a user's mistake).
"""

from __future__ import annotations

__all__ = [
    "ComponentMismatchError",
    "MissingDependencyError",
    "NonFiniteLossError",
    "UnknownComponentError",
    "UnknownRecipeError",
    "UserError",
]


class UserError(ValueError):
    """A mistake the user can fix (a flag, path, config, checkpoint or run directory); the
    message says what is wrong and how to fix it."""


class MissingDependencyError(UserError, ImportError):
    """An optional dependency is not installed; the message names the ``pip install``
    command (also an ``ImportError``)."""


class UnknownRecipeError(UserError, KeyError):
    """An unknown recipe or strategy name; the message lists the known ones (also a
    ``KeyError``, what the lookups raised before)."""

    def __str__(self) -> str:
        # KeyError's str() is the repr of its argument; show the message as written.
        return str(self.args[0]) if self.args else ""


class UnknownComponentError(UserError):
    """A component name (for weight transfer or freezing) the agent does not have; the
    message lists the agent's component names (:mod:`rltransfer.methods.weight_transfer`)."""


class ComponentMismatchError(UserError):
    """Component tensors that do not fit an agent: missing, unexpected, or of another shape;
    the message names each tensor and, for a shape, both shapes."""


class NonFiniteLossError(RuntimeError):
    """A learner's loss or gradient norm was NaN/inf; the update was skipped (parameters,
    optimizer state and update counter unchanged). Raised by the learners' ``update`` (R2D2,
    SAC and EfficientZero); not a :class:`UserError` (the cause is in the run: learning rate,
    rewards, observations), so it keeps its traceback."""
