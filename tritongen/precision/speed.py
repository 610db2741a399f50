"""In-process ONNX Runtime latency of one batch before and after conversion, on this machine."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tritongen.runners.base import cast_feeds
from tritongen.runners.sessions import intra_op_threads
from tritongen.spec import DType, ModelSpec, random_inputs

SPEED_BATCH = 8


@dataclass(frozen=True)
class SpeedReport:
    """In-process ONNX Runtime latency of one batch, before and after conversion, on this machine."""

    batch: int | None
    ms_before: float
    ms_after: float
    runs: int
    threads: int
    load_average: float  # the 1-minute load when measured: other work on the machine skews the numbers

    @property
    def speedup(self) -> float:
        return self.ms_before / self.ms_after if self.ms_after > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "speedup": round(self.speedup, 3),
                "items_per_s_before": _items_per_s(self.batch, self.ms_before),
                "items_per_s_after": _items_per_s(self.batch, self.ms_after)}


def _items_per_s(batch: int | None, ms: float) -> float:
    return round((batch or 1) * 1000.0 / ms, 1) if ms > 0 else 0.0


def interleaved_latencies(paths: Sequence[Path], feeds: Sequence[dict[str, np.ndarray]], *, budget_s: float = 1.5,
                          min_runs: int = 3, warmup: int = 2) -> list[tuple[float, int]]:
    """Median milliseconds of one run of each model (set up as one served instance: all usable CPUs), and runs.

    The models run in turn, one run each, until the budget is spent: a change in the machine's load (other work
    on a shared CPU) then hits every model alike instead of whichever happened to be timed at that moment.
    """
    from tritongen.runners.onnxruntime import OnnxRuntimeRunner

    runners = [OnnxRuntimeRunner(p) for p in paths]
    times: list[list[float]] = [[] for _ in runners]
    try:
        for runner, feed in zip(runners, feeds, strict=True):
            runner.activate()
            for _ in range(warmup):
                runner.infer(feed)
        deadline = time.perf_counter() + budget_s
        while time.perf_counter() < deadline or min(len(t) for t in times) < min_runs:
            for runner, feed, series in zip(runners, feeds, times, strict=True):
                t0 = time.perf_counter()
                runner.infer(feed)
                series.append((time.perf_counter() - t0) * 1000.0)
    finally:
        for runner in runners:
            runner.deactivate()
    return [(float(np.median(series)), len(series)) for series in times]


def speed_before_after(before: Path, after: Path, spec: ModelSpec, feeds: dict[str, np.ndarray] | None = None,
                       *, budget_s: float = 1.5) -> SpeedReport:
    """Time both models on the same batch, interleaved."""
    if feeds is None:
        batch = min(SPEED_BATCH, spec.max_batch_size) if spec.batched else None
        lengths = {a: spec.lengths(a)[-1] for a in spec.dynamic_axes}
        feeds = random_inputs(spec, batch, lengths, np.random.default_rng(5))
    batch = len(next(iter(feeds.values()))) if spec.batched and feeds else None
    (ms_before, runs), (ms_after, _) = interleaved_latencies(
        [before, after], [cast_feeds(feeds, _input_dtypes(before)), cast_feeds(feeds, _input_dtypes(after))],
        budget_s=budget_s)
    threads = intra_op_threads({}, instances=1)
    return SpeedReport(batch, ms_before, ms_after, runs, threads, round(os.getloadavg()[0], 2))


def _input_dtypes(path: Path) -> dict[str, DType]:
    import onnx

    from tritongen.spec import dtype_from_onnx

    model = onnx.load(str(path), load_external_data=False)
    return {i.name: dtype_from_onnx(i.type.tensor_type.elem_type) for i in model.graph.input}


