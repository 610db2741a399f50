"""The confirmation: whether the search's winner really beats the starting config, before anything is written.

The search picks its winner from single measurements, so on a busy machine a lucky one can win. The winner and the
start are measured again alternately, `CONFIRM_ROUNDS` times each, in the order start-best, best-start, start-best
(drift in the machine's load favours neither). The winner is kept only when

- the medians of its rounds beat the start's by more than `MIN_GAIN`, and
- it beat the start in every round, each against the start measured next to it.

Either alone lets noise through: a median gain of 7 % made of one large and two small rounds the other way round was
a 250 µs queue delay that served 0.86x the start in a longer benchmark (issue 16).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tritongen.tune.search import MIN_GAIN, Trial, Trials, better, combined
from tritongen.tune.trial import TrialConfig

CONFIRM_ROUNDS = 3


@dataclass(frozen=True)
class Confirmation:
    improved: bool
    start: Trial  # the start's rounds combined (medians)
    best: Trial  # the winner's
    round_gains: tuple[float | None, ...]  # the winner's throughput / the start's, round by round (None: not feasible)
    note: str | None = None  # why the config is kept, when it is


def confirm(trials: Trials, start: TrialConfig, best: TrialConfig, rounds: int = CONFIRM_ROUNDS) -> Confirmation:
    """Measure `start` and `best` alternately `rounds` times each and judge them (see the module doc)."""
    again: dict[str, list[Trial]] = {"confirm-start": [], "confirm-best": []}
    pair = [("confirm-start", start), ("confirm-best", best)]
    for round_ in range(rounds):
        for role, cfg in pair if round_ % 2 == 0 else pair[::-1]:
            again[role].append(trials.evaluate(cfg, role))
    return judge_rounds(again["confirm-start"], again["confirm-best"], best)


def judge_rounds(starts: Sequence[Trial], bests: Sequence[Trial], best: TrialConfig) -> Confirmation:
    """The verdict on paired rounds (round i of `bests` measured next to round i of `starts`)."""
    start_all, best_all = combined(starts), combined(bests)
    gains = tuple(b.throughput / s.throughput if b.throughput and s.throughput else None
                  for s, b in zip(starts, bests, strict=True))
    every_round = all(better(b, s, min_gain=0.0) for s, b in zip(starts, bests, strict=True))
    by_median = better(best_all, start_all)
    if by_median and every_round:
        return Confirmation(True, start_all, best_all, gains)
    shown = ", ".join("-" if g is None else f"{g:.2f}x" for g in gains)
    if not by_median:
        why = f"its median gain was not above {MIN_GAIN:.0%}"
    else:
        why = "it did not win every round"
    note = (f"no reliable gain: the best trial ({best.describe()}) was measured again {len(bests)} times alternately "
            f"with the starting config (rounds: {shown}) and {why}; kept the current config")
    return Confirmation(False, start_all, best_all, gains, note)
