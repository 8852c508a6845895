"""EfficientZero-normalised scores (XTRA's "improvement") and the paper's Table 1.

Xu et al. (2023) report each game's score divided by EfficientZero's score on the same game at
100k env steps, and the mean and median of that ratio over games ("Mean / Median
Improvement", Table 1 and 2, Figure 13)::

    improvement = score / score_EfficientZero

:data:`PAPER_TABLE1` holds the per-game scores of Table 1 (mean of 5 seeds, 32 evaluation
episodes each; game points) so the aggregates can be recomputed and new runs compared with
them: Shooter 1.361 / 1.278, Maze 1.106 / 1.139, overall 1.233 / 1.250 (mean / median, XTRA
over EfficientZero; the paper prints them rounded to 2 decimals).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

__all__ = [
    "PAPER_TABLE1",
    "TABLE1_CATEGORIES",
    "TABLE1_COLUMNS",
    "ez_normalized_score",
    "improvement_summary",
    "table1_improvements",
]

TABLE1_COLUMNS: tuple[str, ...] = (
    "efficientzero", "efficientzero_l", "xtra", "no_cross_task", "no_pretraining",
    "no_task_weights", "zero_shot_bc", "zero_shot_xtra",
)
"""Table 1's columns: EfficientZero, EfficientZero-L, XTRA, the ablations without
cross-task data, without pretraining and without task weights, and zero-shot behavioural
cloning and zero-shot XTRA."""

TABLE1_CATEGORIES: dict[str, tuple[str, ...]] = {
    "shooter": ("assault", "carnival", "centipede", "demon_attack", "phoenix"),
    "maze": ("alien", "amidar", "bank_heist", "ms_pacman", "wizard_of_wor"),
}
"""Table 1's game categories (each game is pretrained on the other four of its category)."""

_ROWS: dict[str, tuple[float, ...]] = {  # in TABLE1_COLUMNS order
    "assault": (1027.1, 1041.6, 1294.6, 1246.4, 1257.5, 1164.2, 0.0, 92.8),
    "carnival": (3022.1, 2784.3, 3860.9, 3544.4, 2370.0, 3071.6, 93.75, 719.3),
    "centipede": (3322.7, 2750.7, 5681.4, 3833.2, 6322.7, 5484.1, 162.2, 1206.8),
    "demon_attack": (11523.0, 4691.0, 14140.9, 6381.5, 9486.8, 51045.9, 73.8, 113.6),
    "phoenix": (10954.9, 3071.0, 14579.8, 10797.3, 9010.6, 22873.9, 0.0, 8073.4),
    "alien": (695.0, 641.5, 954.8, 722.8, 703.6, 633.6, 108.1, 294.1),
    "amidar": (109.7, 84.2, 90.2, 121.8, 70.8, 69.7, 0.0, 5.2),
    "bank_heist": (246.1, 244.5, 304.9, 280.1, 225.1, 261.4, 0.0, 7.3),
    "ms_pacman": (1281.4, 1172.8, 1459.7, 1011.1, 1122.6, 809.2, 147.6, 448.9),
    "wizard_of_wor": (1033.1, 928.8, 985.0, 1246.1, 654.4, 263.5, 100.0, 9.4),
}

PAPER_TABLE1: dict[str, dict[str, float]] = {
    game: dict(zip(TABLE1_COLUMNS, row, strict=True)) for game, row in _ROWS.items()
}
"""Xu et al. (2023) Table 1: game -> column (:data:`TABLE1_COLUMNS`) -> score at 100k env
steps (game points, mean of 5 seeds)."""


def ez_normalized_score(score: float | np.ndarray,
                        ez_score: float | np.ndarray) -> np.ndarray:
    """The paper's "improvement": ``score / ez_score`` (1.0 = as good as EfficientZero).

    Args:
        score: the agent's score(s) (game points, any shape).
        ez_score: EfficientZero's score(s) on the same game(s), broadcastable, each > 0.

    Returns:
        ``float64`` array of the broadcast shape.

    Raises:
        ValueError: an ``ez_score <= 0`` or not finite (the ratio is not meaningful there;
            use human-normalised scores for such games).
    """
    ref = np.asarray(ez_score, dtype=np.float64)
    if not np.all(np.isfinite(ref)) or np.any(ref <= 0):
        raise ValueError(
            f"EfficientZero reference scores must be finite and > 0 for a ratio, got {ref}; "
            "use human-normalised scores (rltransfer.evaluation.scores) for such games")
    return np.asarray(score, dtype=np.float64) / ref


def improvement_summary(scores: Mapping[str, float], ez_scores: Mapping[str, float],
                        games: Iterable[str] | None = None) -> tuple[float, float]:
    """Mean and median over games of :func:`ez_normalized_score`.

    Args:
        scores: game -> the agent's score.
        ez_scores: game -> EfficientZero's score.
        games: the games to aggregate (default: all of ``scores``).

    Returns:
        ``(mean, median)``.

    Raises:
        KeyError: a game missing from ``scores`` or ``ez_scores``.
        ValueError: no games, or a reference score <= 0.
    """
    names = list(scores if games is None else games)
    if not names:
        raise ValueError("improvement_summary needs at least one game")
    missing = [g for g in names if g not in scores or g not in ez_scores]
    if missing:
        raise KeyError(f"no score or no EfficientZero score for {missing}")
    ratios = ez_normalized_score(np.array([scores[g] for g in names]),
                                 np.array([ez_scores[g] for g in names]))
    return float(np.mean(ratios)), float(np.median(ratios))


def table1_improvements(column: str = "xtra") -> dict[str, tuple[float, float]]:
    """Recompute Table 1's mean / median improvement of ``column`` from its per-game scores.

    Returns:
        ``{"shooter": (mean, median), "maze": (...), "overall": (...)}``; for ``"xtra"``
        about (1.361, 1.278), (1.106, 1.139), (1.233, 1.250).

    Raises:
        KeyError: an unknown column (see :data:`TABLE1_COLUMNS`).
    """
    if column not in TABLE1_COLUMNS:
        raise KeyError(f"unknown Table 1 column {column!r}; columns: {list(TABLE1_COLUMNS)}")
    scores = {g: row[column] for g, row in PAPER_TABLE1.items()}
    ez = {g: row["efficientzero"] for g, row in PAPER_TABLE1.items()}
    out = {cat: improvement_summary(scores, ez, games)
           for cat, games in TABLE1_CATEGORIES.items()}
    out["overall"] = improvement_summary(scores, ez)
    return out
