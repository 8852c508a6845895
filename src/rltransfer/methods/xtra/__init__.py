"""XTRA: model-based cross-task transfer (Xu et al. 2023, ICLR), on EfficientZero.

Built so far (the pure, testable parts):

* :mod:`~rltransfer.methods.xtra.task_weights`: gradient-similarity task weights of the
  cross-task finetuning (Eq. 1, 2, 4; the paper's and the public code's formulas).
* :mod:`~rltransfer.methods.xtra.datasets`: offline datasets from finished EfficientZero runs
  (the dataset itself: :mod:`rltransfer.replay.offline`; shared action spaces:
  :mod:`rltransfer.envs.shared_actions`).
* :mod:`~rltransfer.methods.xtra.scores`: EfficientZero-normalised scores ("improvement")
  and the paper's Table 1.
"""
