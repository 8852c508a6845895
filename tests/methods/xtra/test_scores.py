"""EfficientZero-normalised scores and the paper's Table 1 recomputed from its per-game scores."""

from __future__ import annotations

import numpy as np
import pytest

from rltransfer.methods.xtra.scores import (
    PAPER_TABLE1,
    TABLE1_COLUMNS,
    ez_normalized_score,
    improvement_summary,
    table1_improvements,
)

# Table 1's printed Mean / Median Improvement rows (2 decimals): shooter, maze, overall.
PRINTED = {
    "efficientzero": [(1.00, 1.00), (1.00, 1.00), (1.00, 1.00)],
    "efficientzero_l": [(0.69, 0.83), (0.90, 0.92), (0.79, 0.91)],
    "xtra": [(1.36, 1.28), (1.11, 1.14), (1.23, 1.25)],
    "no_cross_task": [(1.02, 1.15), (1.06, 1.11), (1.04, 1.12)],
    "no_pretraining": [(1.11, 0.82), (0.82, 0.88), (0.96, 0.85)],
    "no_task_weights": [(2.06, 1.65), (0.70, 0.64), (1.38, 1.04)],
    "zero_shot_bc": [(0.02, 0.01), (0.07, 0.10), (0.05, 0.02)],
    "zero_shot_xtra": [(0.29, 0.24), (0.17, 0.05), (0.23, 0.16)],
}


def test_xtra_improvement_recomputed_from_per_game_scores() -> None:
    got = {k: (round(m, 3), round(md, 3)) for k, (m, md) in table1_improvements().items()}
    assert got == {"shooter": (1.361, 1.278), "maze": (1.106, 1.139),
                   "overall": (1.233, 1.250)}


@pytest.mark.parametrize("column", TABLE1_COLUMNS)
def test_every_column_matches_the_printed_rows(column: str) -> None:
    """A check of the transcribed per-game scores: each column's aggregates round to the
    printed ones."""
    got = table1_improvements(column)
    for cat, (mean, median) in zip(("shooter", "maze", "overall"), PRINTED[column],
                                   strict=True):
        assert (round(got[cat][0], 2), round(got[cat][1], 2)) == (mean, median), cat


def test_ez_normalized_score() -> None:
    assert ez_normalized_score(1294.6, 1027.1) == pytest.approx(1.2604, abs=1e-4)
    assert ez_normalized_score(np.array([2.0, 3.0]), 2.0).tolist() == [1.0, 1.5]
    with pytest.raises(ValueError, match="human-normalised"):
        ez_normalized_score(1.0, 0.0)
    assert improvement_summary({"a": 2.0, "b": 1.0, "c": 4.0},
                               {"a": 1.0, "b": 1.0, "c": 1.0}) == (7 / 3, 2.0)
    with pytest.raises(KeyError, match="no score"):
        improvement_summary({"a": 1.0}, {}, ["a"])
    assert len(PAPER_TABLE1) == 10
    with pytest.raises(KeyError, match="unknown Table 1 column"):
        table1_improvements("muzero")
