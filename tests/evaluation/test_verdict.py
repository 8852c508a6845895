"""The report's verdict on hand-made scores, probability of improvement, performance profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rliable.metrics as rl_metrics

from rltransfer.evaluation.aggregate import (
    AggregateInputError,
    Estimate,
    performance_profiles,
    probability_of_improvement,
)
from rltransfer.evaluation.report import write_report
from rltransfer.evaluation.verdict import classify, compare_with_baseline

REPS = 300

# 5 seeds x 3 tasks, normalised scores in [0, 1]
SCRATCH = np.array([[0.0, 0.0, 0.1], [0.0, 0.1, 0.0], [0.1, 0.0, 0.0], [0.0, 0.0, 0.0],
                    [0.0, 0.1, 0.1]])
CLEARLY_BETTER = SCRATCH + 0.8  # every run far above every scratch run
OVERLAPPING = np.array([[0.0, 0.3, 0.0], [0.0, 0.0, 0.2], [0.4, 0.0, 0.0], [0.0, 0.0, 0.0],
                        [0.1, 0.0, 0.3]])  # better on average, but CIs overlap scratch's
WORSE_THAN_GOOD = np.full((5, 3), 0.0)


def test_classify_by_hand() -> None:
    base = Estimate(0.2, 0.1, 0.3)
    assert classify(Estimate(0.5, 0.31, 0.7), base) == "better"
    assert classify(Estimate(0.5, 0.3, 0.7), base) == "not separated"  # touching overlaps
    assert classify(Estimate(0.05, 0.0, 0.09), base) == "worse"
    assert classify(Estimate(0.2, 0.0, 0.9), base) == "not separated"


def test_verdict_separates_only_non_overlapping_cis() -> None:
    scores = {"scratch_eps_greedy": SCRATCH, "bt": CLEARLY_BETTER, "full_init": OVERLAPPING}
    v = compare_with_baseline(scores, reps=REPS)
    assert v.names("better") == ["bt"]
    assert v.names("not separated") == ["full_init"]
    assert v.names("worse") == []
    by = {c.strategy: c for c in v.comparisons}
    # the overlapping case really overlaps, and its point is above scratch's
    assert by["full_init"].iqm.low <= v.baseline_iqm.high
    assert by["full_init"].iqm.point > v.baseline_iqm.point
    assert by["bt"].iqm.low > v.baseline_iqm.high
    text = v.markdown()
    assert "**Beat scratch_eps_greedy**" in text and "`bt`" in text.split("\n")[2]
    assert "Not separated" in text and "full_init" in text
    # P(bt > scratch) = 1: every bt run is above every scratch run on its task
    assert by["bt"].poi is not None and by["bt"].poi.point == pytest.approx(1.0)


def test_verdict_when_nothing_beats_scratch_says_so() -> None:
    good = {"scratch_eps_greedy": CLEARLY_BETTER, "bt": WORSE_THAN_GOOD, "full_init": OVERLAPPING}
    v = compare_with_baseline(good, reps=REPS)
    assert v.names("better") == []
    assert v.names("worse") == ["bt", "full_init"]
    text = v.markdown()
    assert "No strategy beats scratch_eps_greedy" in text
    assert "Below scratch_eps_greedy" in text


def test_verdict_identical_scores_and_one_seed() -> None:
    zeros = np.zeros((5, 3))
    v = compare_with_baseline({"scratch_eps_greedy": zeros, "bt": zeros}, reps=REPS)
    assert v.names("not separated") == ["bt"]  # [0, 0] vs [0, 0]: touching, no verdict
    one = compare_with_baseline({"scratch_eps_greedy": [0.0], "bt": [1.0]}, reps=REPS)
    assert one.names("too few seeds") == ["bt"]
    assert "No verdict" in one.markdown()
    two = compare_with_baseline({"scratch_eps_greedy": SCRATCH[:2], "bt": CLEARLY_BETTER[:2]},
                                reps=REPS)
    assert two.names("too few seeds") == ["bt"]  # 2 seeds: bootstrap CIs too narrow


def test_ablation_sentences() -> None:
    scores = {"scratch_eps_greedy": SCRATCH, "bt": CLEARLY_BETTER,
              "bt_flights_only": CLEARLY_BETTER - 0.05, "bt_extra_action_only": SCRATCH}
    v = compare_with_baseline(scores, reps=REPS)
    assert len(v.ablation) == 2
    assert "`bt_flights_only` scores above `bt_extra_action_only`" in v.ablation[0]
    assert "`bt_extra_action_only` scores below `bt`" in v.ablation[1]
    assert "`bt_flights_only` and `bt` are not separated" in v.ablation[1]
    without = compare_with_baseline({"scratch_eps_greedy": SCRATCH, "bt": SCRATCH}, reps=REPS)
    assert without.ablation == ()


def test_verdict_needs_the_baseline() -> None:
    with pytest.raises(AggregateInputError, match="baseline"):
        compare_with_baseline({"bt": SCRATCH})


def test_probability_of_improvement_matches_rliable() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 1.0, (6, 3)), rng.normal(0.0, 1.0, (5, 3))
    poi = probability_of_improvement({"a": a, "b": b}, "b", reps=REPS, seed=1)
    assert set(poi) == {"a"}
    assert poi["a"].point == pytest.approx(rl_metrics.probability_of_improvement(a, b))
    assert 0.0 <= poi["a"].low <= poi["a"].point <= poi["a"].high <= 1.0
    again = probability_of_improvement({"b": b, "a": a}, "b", reps=REPS, seed=1)
    assert again["a"] == poi["a"]
    with pytest.raises(AggregateInputError, match="task"):
        probability_of_improvement({"a": a[:, :2], "b": b}, "b", reps=REPS)


def test_performance_profiles_by_hand() -> None:
    x = np.array([[0.0, 0.5], [1.0, 0.2]])
    prof = performance_profiles({"x": x}, [0.0, 0.3, 0.9], reps=REPS)["x"]
    np.testing.assert_allclose(prof.point, [0.75, 0.5, 0.25])  # fraction of 4 runs > tau
    assert np.all(prof.low <= prof.point) and np.all(prof.point <= prof.high)
    with pytest.raises(AggregateInputError, match="taus"):
        performance_profiles({"x": x}, [])


def test_report_opens_with_the_verdict(tmp_path: Path) -> None:
    scores = {"scratch_eps_greedy": SCRATCH, "bt": CLEARLY_BETTER, "full_init": OVERLAPPING}
    path = write_report(tmp_path / "report.md", "suite", scores, baseline="scratch_eps_greedy",
                        task_names=["goal", "key", "door"], reps=REPS)
    text = path.read_text()
    assert text.splitlines()[2].startswith("**Verdict**")
    assert "## Probability of improvement over scratch_eps_greedy" in text
    assert "## Performance profiles" in text
    for png in ("report_poi.png", "report_profiles.png", "report_intervals.png"):
        assert (tmp_path / png).stat().st_size > 1000
    plain = write_report(tmp_path / "plain.md", "one", {"bt": [0.1, 0.2]}, reps=REPS,
                         baseline="scratch_eps_greedy")
    assert "Verdict" not in plain.read_text()
