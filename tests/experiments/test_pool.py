"""run_jobs (experiments/pool.py): results in job order, progress callbacks, errors."""

from __future__ import annotations

import pytest

from rltransfer.experiments.pool import run_jobs


@pytest.mark.parametrize("workers", [1, 2])
def test_results_come_back_in_job_order_with_one_callback_per_job(workers: int) -> None:
    calls: list[tuple[int, int, int]] = []
    out = run_jobs(abs, [-3, 2, -1], workers,
                   on_done=lambda done, total, result: calls.append((done, total, result)))
    assert out == [3, 2, 1]
    assert [c[0] for c in calls] == [1, 2, 3]
    assert {c[1] for c in calls} == {3}
    assert sorted(c[2] for c in calls) == [1, 2, 3]


def test_no_jobs_and_bad_worker_counts() -> None:
    assert run_jobs(abs, [], 1) == []
    with pytest.raises(ValueError, match="workers must be >= 1"):
        run_jobs(abs, [1], 0)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_job_raises_here(workers: int) -> None:
    with pytest.raises(ValueError):
        run_jobs(int, ["1", "not a number"], workers)
