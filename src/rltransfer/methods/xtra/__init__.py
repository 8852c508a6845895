"""XTRA: model-based cross-task transfer (Xu et al. 2023, ICLR), on EfficientZero.

* :mod:`~rltransfer.methods.xtra.task_weights`: gradient-similarity task weights of the
  cross-task finetuning (Eq. 1, 2, 4; the paper's and the public code's formulas).
* :mod:`~rltransfer.methods.xtra.datasets`: offline datasets from finished EfficientZero runs
  (the dataset itself: :mod:`rltransfer.replay.offline`; shared action spaces:
  :mod:`rltransfer.envs.shared_actions`).
* one game's view of a union-width world model (padded channels, legal ids at every node,
  local -> union ids) is the EfficientZero agent's
  :mod:`rltransfer.agents.efficientzero.shared_space` (``GameAdapter``, ``GameModel``).
* :mod:`~rltransfer.methods.xtra.offline_batches`: EfficientZero batches from a dataset with
  targets by a given network (MuZero Reanalyze, the one reanalyser).
* :mod:`~rltransfer.methods.xtra.offline_loop`, :mod:`~rltransfer.methods.xtra.teachers`,
  :mod:`~rltransfer.methods.xtra.distill`: the offline stages on the training loop (teachers,
  the distilled student); configs in :mod:`~rltransfer.methods.xtra.config`.
* :mod:`~rltransfer.methods.xtra.finetune`: concurrent cross-task finetuning on the
  EfficientZero trainer, its variants and zero-shot evaluation.
* :mod:`~rltransfer.methods.xtra.scores`: EfficientZero-normalised scores ("improvement")
  and the paper's Table 1; :mod:`~rltransfer.methods.xtra.report`: eta curves and the
  student-vs-teacher table. Recipes: :mod:`rltransfer.experiments.xtra`.
"""
