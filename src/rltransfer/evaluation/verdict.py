"""The verdict a report opens with: which strategies beat a baseline, by their confidence intervals.

The rule (never stronger than the CIs): strategy X *beats* the baseline only when the lower end
of X's IQM confidence interval is above the upper end of the baseline's (the two 95%
stratified-bootstrap CIs do not overlap, Agarwal et al. 2021); it is *below* the baseline when
its upper end is under the baseline's lower end; otherwise the data *do not separate* them.
Touching intervals (``low_X == high_baseline``) count as overlapping. With fewer than
:data:`MIN_SEEDS` (3) seeds no verdict is given for that strategy: with 1 seed a bootstrap CI
collapses to the point, and with 2 the percentile bootstrap has only 3 distinct resamples per
task, so its CIs are too narrow to mean 95%. Non-overlap of
two 95% CIs is a conservative test (it implies a difference at well under the 5% level), so a
"not separated" is not evidence of equality either, and the report says so.

The probability of improvement ``P(X > baseline)`` (with its CI) is quoted beside each
strategy as the effect size; it does not change the classification.

The ablation line compares Behavior Transfer's two components (Campos et al. 2021, Sec. 5,
"flights only" and "a+ only", Table 1) with the same rule: each against the baseline, against
each other, and against full BT when present.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from rltransfer.evaluation.aggregate import (
    AggregateInputError,
    Estimate,
    aggregate_scores,
    probability_of_improvement,
)

Outcome = Literal["better", "worse", "not separated", "too few seeds"]
"""How a strategy compares with the baseline by IQM CIs."""

BASELINE = "scratch_eps_greedy"
"""The default baseline: learning the task from scratch with epsilon-greedy exploration."""

MIN_SEEDS = 3
"""Fewest seeds (of the strategy and of the baseline) for a verdict."""

FLIGHTS_ONLY = "bt_flights_only"
EXTRA_ACTION_ONLY = "bt_extra_action_only"
FULL_BT = "bt"


@dataclass(frozen=True)
class Comparison:
    """One strategy against the baseline.

    Attributes:
        strategy: its name.
        outcome: see :data:`Outcome`.
        iqm: the strategy's IQM with its CI (normalised-score units).
        poi: ``P(strategy > baseline)`` with its CI, or ``None`` when not computed.
    """

    strategy: str
    outcome: Outcome
    iqm: Estimate
    poi: Estimate | None


@dataclass(frozen=True)
class Verdict:
    """The outcome of :func:`compare_with_baseline`.

    Attributes:
        baseline: the baseline's name.
        baseline_iqm: its IQM with CI.
        comparisons: every other strategy, in input order.
        ablation: sentences on flights-only vs a+-only (empty when either is missing).
        confidence: the CIs' coverage (e.g. 0.95).
        score_label: what the scores are (e.g. ``"normalised return"``), for the text.
    """

    baseline: str
    baseline_iqm: Estimate
    comparisons: tuple[Comparison, ...]
    ablation: tuple[str, ...]
    confidence: float
    score_label: str = "score"

    def names(self, outcome: Outcome) -> list[str]:
        """Strategies with that outcome, in input order."""
        return [c.strategy for c in self.comparisons if c.outcome == outcome]

    def markdown(self) -> str:
        """The verdict as a markdown block (a heading-less paragraph and a bullet list)."""
        pct = f"{100 * self.confidence:g}%"
        by_name = {c.strategy: c for c in self.comparisons}

        def cite(name: str) -> str:
            c = by_name[name]
            text = f"`{name}` (IQM {_fmt(c.iqm)}"
            if c.poi is not None:
                text += f", P(> {self.baseline}) {_fmt(c.poi)}"
            return text + ")"

        better = self.names("better")
        worse = self.names("worse")
        unsep = self.names("not separated")
        few = self.names("too few seeds")
        lines = [
            f"**Verdict** (IQM of the final {self.score_label} with {pct} stratified-bootstrap "
            f"CIs over (task, seed); baseline `{self.baseline}`: IQM {_fmt(self.baseline_iqm)}). "
            f"A strategy beats the baseline only when the two CIs do not overlap.",
            "",
        ]
        if better:
            lines.append(f"- **Beat {self.baseline}** (CI entirely above): "
                         + "; ".join(cite(n) for n in better) + ".")
        else:
            lines.append(f"- **No strategy beats {self.baseline}** with non-overlapping CIs.")
        if worse:
            lines.append(f"- **Below {self.baseline}** (CI entirely below): "
                         + "; ".join(cite(n) for n in worse) + ".")
        if unsep:
            lines.append(f"- **Not separated from {self.baseline}** (CIs overlap; the data at "
                         "this number of seeds do not say which is better): "
                         + "; ".join(cite(n) for n in unsep) + ".")
        if few:
            lines.append(f"- **No verdict** (fewer than {MIN_SEEDS} seeds, the CI means little): "
                         + ", ".join(f"`{n}`" for n in few) + ".")
        lines += [f"- {sentence}" for sentence in self.ablation]
        return "\n".join(lines)


def _fmt(est: Estimate) -> str:
    return f"{est.point:.3g} [{est.low:.3g}, {est.high:.3g}]"


def classify(x: Estimate, baseline: Estimate) -> Outcome:
    """``"better"`` when ``x.low > baseline.high``, ``"worse"`` when ``x.high < baseline.low``,
    else ``"not separated"`` (touching intervals overlap)."""
    if x.low > baseline.high:
        return "better"
    if x.high < baseline.low:
        return "worse"
    return "not separated"


def _pair_sentence(a: str, ea: Estimate, b: str, eb: Estimate) -> str:
    outcome = classify(ea, eb)
    if outcome == "better":
        return f"`{a}` scores above `{b}` (IQM {_fmt(ea)} vs {_fmt(eb)}, CIs do not overlap)"
    if outcome == "worse":
        return f"`{a}` scores below `{b}` (IQM {_fmt(ea)} vs {_fmt(eb)}, CIs do not overlap)"
    return f"`{a}` and `{b}` are not separated (IQM {_fmt(ea)} vs {_fmt(eb)}, CIs overlap)"


def _ablation(iqms: Mapping[str, Estimate], seeds: Mapping[str, int]) -> tuple[str, ...]:
    if FLIGHTS_ONLY not in iqms or EXTRA_ACTION_ONLY not in iqms:
        return ()
    if min(seeds[FLIGHTS_ONLY], seeds[EXTRA_ACTION_ONLY]) < MIN_SEEDS:
        return (f"Ablations: fewer than {MIN_SEEDS} seeds, no verdict on flights vs a+.",)
    parts = [
        "Ablations (Behavior Transfer's components): "
        + _pair_sentence(FLIGHTS_ONLY, iqms[FLIGHTS_ONLY], EXTRA_ACTION_ONLY,
                         iqms[EXTRA_ACTION_ONLY]) + "."
    ]
    if FULL_BT in iqms and seeds[FULL_BT] >= MIN_SEEDS:
        parts.append(
            "Against full BT: "
            + _pair_sentence(FLIGHTS_ONLY, iqms[FLIGHTS_ONLY], FULL_BT, iqms[FULL_BT]) + "; "
            + _pair_sentence(EXTRA_ACTION_ONLY, iqms[EXTRA_ACTION_ONLY], FULL_BT, iqms[FULL_BT])
            + "."
        )
    return tuple(parts)


def compare_with_baseline(
    scores: Mapping[str, np.ndarray | Sequence[float]],
    baseline: str = BASELINE,
    *,
    estimates: Mapping[str, Mapping[str, Estimate]] | None = None,
    poi: Mapping[str, Estimate] | None = None,
    reps: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
    score_label: str = "score",
) -> Verdict:
    """Classify every strategy against ``baseline`` by non-overlap of IQM CIs.

    Args:
        scores: strategy -> normalised scores ``[num_seeds, num_tasks]`` (or ``[num_seeds]``),
            one value per (seed, task); must include ``baseline``.
        baseline: the strategy compared with (default ``"scratch_eps_greedy"``).
        estimates: precomputed :func:`~rltransfer.evaluation.aggregate.aggregate_scores`
            output with an ``"iqm"`` entry per strategy (computed here when ``None``).
        poi: precomputed :func:`~rltransfer.evaluation.aggregate.probability_of_improvement`
            over ``baseline`` (computed here when ``None``; skipped if task counts differ).
        reps, seed, confidence: bootstrap settings when computing.
        score_label: what the scores are, for :meth:`Verdict.markdown`.

    Returns:
        A :class:`Verdict`; :meth:`Verdict.markdown` is the report's opening block.

    Raises:
        AggregateInputError (a ``ValueError``): ``baseline`` not in ``scores``, or the score
            errors of :func:`~rltransfer.evaluation.aggregate.aggregate_scores`.
    """
    if baseline not in scores:
        raise AggregateInputError(
            f"baseline {baseline!r} has no scores; strategies given: {list(scores)}"
        )
    if estimates is None:
        estimates = aggregate_scores(scores, reps=reps, seed=seed, confidence=confidence,
                                     metrics=("iqm",))
    seeds = {n: int(np.atleast_1d(np.asarray(v, dtype=np.float64)).shape[0])
             for n, v in scores.items()}
    if poi is None:
        tasks = {np.asarray(v, dtype=np.float64).reshape(seeds[n], -1).shape[1]
                 for n, v in scores.items()}
        poi = (probability_of_improvement(scores, baseline, reps=reps, seed=seed,
                                          confidence=confidence) if len(tasks) == 1 else {})
    iqms = {n: estimates[n]["iqm"] for n in scores}
    base = iqms[baseline]
    comparisons = []
    for name in scores:
        if name == baseline:
            continue
        outcome: Outcome = (
            "too few seeds" if min(seeds[name], seeds[baseline]) < MIN_SEEDS
            else classify(iqms[name], base)
        )
        comparisons.append(Comparison(name, outcome, iqms[name], poi.get(name)))
    return Verdict(baseline, base, tuple(comparisons), _ablation(iqms, seeds),
                   confidence, score_label)


__all__ = ["BASELINE", "MIN_SEEDS", "Comparison", "Outcome", "Verdict", "classify",
           "compare_with_baseline"]
