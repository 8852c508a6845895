"""EfficientZero (Ye et al. 2021) as XTRA (Xu et al. 2023) uses it, top to bottom:

* ``config.py``: :class:`EfficientZeroConfig` (learner), :class:`EZTrainConfig` (one run),
  their ``validate()`` and the schedules (learning rate, temperature, importance exponent).
* ``networks.py``: the world model h, g (value-prefix LSTM), f and the SimSiam projection.
* ``mcts.py`` + ``mcts_kernels.py``: batched MCTS (numba).
* ``losses.py``: the loss terms as pure functions (EZ Eq. 5, weights 1 / 1 / 0.25 / 2).
* ``augmentation.py``: random shift + intensity.
* ``batch.py``: ``EZBatch``, the learner's input; ``reanalyse.py`` builds it from replay.
* ``learner.py``: ``EfficientZeroLearner`` (``update(batch) -> UpdateResult``).
* ``actor.py``: ``SelfPlayActor``, the self-play both the local loop and the Ray workers run.
* ``shared_space.py``: ``GameAdapter``, one game inside a shared action space (XTRA's
  union of actions; masked search, union ids and policies, channel padding).
* ``train.py``: ``EZTrainer`` / ``train_efficientzero`` on the shared training loop.
"""
