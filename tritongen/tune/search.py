"""The search: coordinate-wise hill climbing over the settings of `TrialConfig`, against any way of measuring one.

From the current config, walk one setting at a time in the direction that improves the objective (highest throughput
with p99 within the latency budget), then the next setting, and repeat until a whole pass changes nothing or the
budget runs out. `Trials` remembers each config's result, keyed by what the server runs, so a setting is never
measured twice; how a config is measured is the caller's `measure` callable (a real server in `tune.run`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tritongen.bench import LoadPoint
from tritongen.errors import TritongenError
from tritongen.tune.trial import TrialConfig

# A move must beat the best so far by this much: smaller differences are within run-to-run noise on a busy machine.
MIN_GAIN = 0.03
QUEUE_DELAYS_US = (0, 100, 250, 500, 1000, 2000, 5000, 10000)
AXES = ("instances", "intra_op_threads", "max_queue_delay_us", "max_batch_size", "preferred_batch_sizes")
CATEGORICAL = ("intra_op_threads", "preferred_batch_sizes")  # tried value by value, not walked along an order
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Trial:
    index: int
    role: str  # start | search | confirm-start | confirm-best
    config: TrialConfig
    points: tuple[LoadPoint, ...]
    feasible: bool  # some concurrency level met the latency budget without errors
    throughput: float | None  # the best inferences/s among feasible levels
    concurrency: int | None  # where that was
    p99_ms: float | None  # at that level; for an infeasible trial, the lowest p99 seen
    seconds: float
    error: str | None = None


def judge(index: int, role: str, cfg: TrialConfig, points: tuple[LoadPoint, ...], seconds: float,
          budget_ms: float | None) -> Trial:
    """A trial from its load points: the best throughput among levels without errors and within the budget."""
    ok = [p for p in points if p.requests > 0 and p.errors == 0 and (budget_ms is None or p.latency.p99 <= budget_ms)]
    if ok:
        best = max(ok, key=lambda p: p.throughput)
        return Trial(index, role, cfg, points, True, best.throughput, best.concurrency, best.latency.p99, seconds)
    p99s = [p.latency.p99 for p in points if p.requests > 0]
    errors = next((p.first_error for p in points if p.first_error), None)
    return Trial(index, role, cfg, points, False, None, None, min(p99s) if p99s else None, seconds,
                 error=None if p99s else errors or "no request succeeded")


def better(a: Trial, b: Trial, min_gain: float = MIN_GAIN) -> bool:
    """Whether trial `a` beats `b` by more than noise: feasible first, then throughput (or, unfeasible, lower p99)."""
    if a.error or not a.points:
        return False
    if b.error or not b.points:
        return True
    if a.feasible != b.feasible:
        return a.feasible
    if a.feasible:
        return (a.throughput or 0.0) > (b.throughput or 0.0) * (1 + min_gain)
    return (a.p99_ms or math.inf) < (b.p99_ms or math.inf) * (1 - min_gain)


def combined(trials: Sequence[Trial]) -> Trial:
    """Several measurements of one config as one: medians, so one round disturbed by other work does not decide."""
    first = trials[0]
    feasible = sum(t.feasible for t in trials) * 2 > len(trials)
    throughputs = [t.throughput for t in trials if t.throughput is not None]
    p99s = [t.p99_ms for t in trials if t.p99_ms is not None]
    errors = [t.error for t in trials if t.error]
    return replace(first, points=tuple(p for t in trials for p in t.points), feasible=feasible,
                   throughput=statistics.median(throughputs) if feasible and throughputs else None,
                   p99_ms=statistics.median(p99s) if p99s else None, seconds=sum(t.seconds for t in trials),
                   error=errors[0] if len(errors) * 2 > len(trials) else None)


class Trials:
    """Measures configs through `measure` and remembers every trial; a config the server runs alike is measured once.

    `measure(cfg)` returns the config's load points, or raises TritongenError (the trial then records the error).
    `default_threads(instances)` is the thread count the server picks itself when none is set (None: unknown).
    """

    def __init__(self, measure: Callable[[TrialConfig], tuple[LoadPoint, ...]], budget_ms: float | None,
                 default_threads: Callable[[int], int] | None = None,
                 on_trial: Callable[[Trial], None] | None = None, progress: Progress | None = None) -> None:
        self.measure = measure
        self.budget_ms = budget_ms
        self.default_threads = default_threads
        self.on_trial = on_trial or (lambda _t: None)
        self.progress = progress or (lambda _m: None)
        self.trials: list[Trial] = []
        self.cache: dict[TrialConfig, Trial] = {}  # keyed by what the server runs: see `key`

    @property
    def search_trials(self) -> int:
        return sum(1 for t in self.trials if t.role in ("start", "search"))

    def key(self, cfg: TrialConfig) -> TrialConfig:
        return cfg.same_as_default_threads(self.default_threads)

    def trial_of(self, cfg: TrialConfig) -> Trial | None:
        return self.cache.get(self.key(cfg))

    def evaluate(self, cfg: TrialConfig, role: str = "search") -> Trial:
        key = self.key(cfg)
        if role in ("start", "search") and key in self.cache:
            return self.cache[key]  # the same config for the server: its trial, not a new one
        started = time.perf_counter()
        index = len(self.trials) + 1
        self.progress(f"trial {index}: {cfg.describe()}")
        try:
            points = self.measure(cfg)
        except TritongenError as exc:
            trial = Trial(index, role, cfg, (), False, None, None, None, time.perf_counter() - started, exc.message)
        else:
            trial = judge(index, role, cfg, points, time.perf_counter() - started, self.budget_ms)
        self.trials.append(trial)
        if role in ("start", "search"):
            self.cache[key] = trial
        self.on_trial(trial)
        return trial


def search_axes(start: TrialConfig, built_max: int, cpus: int,
                instances: Sequence[int] | None = None, threads: Sequence[int] | None = None) -> dict[str, list[Any]]:
    """Ordered values per setting; batching settings only for models that batch, never above the built max."""
    counts = sorted(set(instances or (1, 2, 3, 4, max(1, cpus // 2), cpus)) | {start.instances})
    if not instances:
        counts = [c for c in counts if c <= max(4, cpus, start.instances)]
    axes: dict[str, list[Any]] = {"instances": counts}
    # Powers of two up to the CPU count: on a small machine one thread often beats several that spin-wait
    # against the server's and the client's own threads.
    axes["intra_op_threads"] = sorted(set(threads or ({1 << i for i in range(0, 8) if (1 << i) <= cpus} | {cpus})))
    if built_max > 0:
        sizes = {1 << i for i in range(1, 16) if (1 << i) <= built_max} | {built_max, start.max_batch_size}
        axes["max_batch_size"] = sorted(s for s in sizes if 1 <= s <= built_max)
        delays: list[Any] = sorted(set(QUEUE_DELAYS_US) | ({start.max_queue_delay_us} - {None}))
        axes["max_queue_delay_us"] = ([None] if start.max_queue_delay_us is None else []) + delays
        axes["preferred_batch_sizes"] = []  # depends on max_batch_size: see preferred_choices
    return axes


def preferred_choices(cfg: TrialConfig, start: TrialConfig) -> list[tuple[int, ...]]:
    """Preferred batch sizes to try at `cfg`'s max batch size (and the start's own, where they fit)."""
    # No preferred size means [max_batch_size] to Triton (it fills that in when it loads the config): not a choice.
    mbs = cfg.max_batch_size
    choices = [()] + ([(mbs // 2, mbs)] if mbs >= 4 else []) + ([(mbs // 4, mbs // 2, mbs)] if mbs >= 8 else [])
    if start.preferred_batch_sizes and max(start.preferred_batch_sizes) <= mbs and start.preferred_batch_sizes not in choices:
        choices.append(start.preferred_batch_sizes)
    return choices


def with_value(cfg: TrialConfig, axis: str, value: Any) -> TrialConfig:
    """`cfg` with one setting moved; preferred sizes follow a new max batch size."""
    if axis != "max_batch_size":
        return replace(cfg, **{axis: value})
    # Fractions of the old max (max/2, max) become the same fractions of the new one; other sizes stay where they fit.
    old, preferred = cfg.max_batch_size, cfg.preferred_batch_sizes
    if preferred and all(old % p == 0 for p in preferred) and all(value * p % old == 0 for p in preferred):
        preferred = tuple(sorted({value * p // old for p in preferred}))
    else:
        preferred = tuple(p for p in preferred if p <= value)
    return replace(cfg, max_batch_size=value, preferred_batch_sizes=preferred)


def search(trials: Trials, start: TrialConfig, axes: dict[str, list[Any]],
           budget_left: Callable[[], str | None]) -> tuple[TrialConfig, str]:
    """Coordinate-wise hill climbing from `start`; returns the best config and why the search stopped.

    `budget_left()` says why to stop (trials or time spent), or None to go on.
    """
    best = trials.evaluate(start, "start")
    current = start
    order = [a for a in AXES if a in axes]
    while True:
        moved_in_pass = False
        for axis in order:
            values = preferred_choices(current, start) if axis == "preferred_batch_sizes" else axes[axis]
            here = getattr(current, axis)
            if axis in CATEGORICAL:
                # Unordered choices: try each, keep the best.
                for value in values:
                    if value == here:
                        continue
                    if (why := budget_left()) is not None:
                        return current, why
                    trial = trials.evaluate(with_value(current, axis, value))
                    if better(trial, best):
                        current, best, moved_in_pass = trial.config, trial, True
                continue
            if here not in values:
                values = sorted(set(values) | {here}, key=lambda v: -1 if v is None else v)
            index = values.index(here)
            for direction in (+1, -1):
                moved = False
                i = index + direction
                while 0 <= i < len(values):
                    if (why := budget_left()) is not None:
                        return current, why
                    trial = trials.evaluate(with_value(current, axis, values[i]))
                    if not better(trial, best):
                        break
                    current, best, moved, moved_in_pass = trial.config, trial, True, True
                    i += direction
                if moved:
                    break  # improving upwards: no need to look downwards
        if not moved_in_pass:
            return current, "no single change improved the best config (a local optimum)"
