"""Run independent training jobs, in this process or in a pool of worker processes.

One home for the experiment runners' parallelism (Behavior Transfer strategies x seeds,
encoder-pretraining cells, ...): each job is a picklable config passed to a module-level
function; workers are spawned (not forked) so each starts with a clean torch runtime.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

C = TypeVar("C")
R = TypeVar("R")


def run_jobs(
    fn: Callable[[C], R],
    jobs: Sequence[C],
    workers: int,
    on_done: Callable[[int, int, R], None] | None = None,
) -> list[R]:
    """Call ``fn(job)`` for every job, ``workers`` at a time, and return results in job order.

    Args:
        fn: a module-level (picklable) function.
        jobs: picklable arguments, e.g. dataclass configs.
        workers: 1 runs everything in this process, in order; more uses spawned processes.
        on_done: called as ``on_done(done_count, total, result)`` when each job finishes.

    Raises:
        ValueError: ``workers < 1``. Any exception of a job is re-raised here (the other
            jobs of the pool still finish first).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(jobs) <= 1:
        results: list[R] = []
        for i, job in enumerate(jobs):
            results.append(fn(job))
            if on_done is not None:
                on_done(i + 1, len(jobs), results[i])
        return results
    by_index: dict[int, R] = {}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(fn, job): i for i, job in enumerate(jobs)}
        for done, future in enumerate(as_completed(futures), start=1):
            result = future.result()
            by_index[futures[future]] = result
            if on_done is not None:
                on_done(done, len(jobs), result)
    return [by_index[i] for i in range(len(jobs))]
