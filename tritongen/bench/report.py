"""The values a bench run produces: latency, Triton's statistics for a window, load points, the ceiling, the
generator check and the report that holds them (with its JSON form)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tritongen.jsonsafe import json_safe


@dataclass(frozen=True)
class LatencyStats:
    """Client-side latency of successful requests, in milliseconds (send to answer, as a user sees it)."""

    p50: float
    p90: float
    p95: float
    p99: float
    mean: float
    max: float

    @staticmethod
    def of(seconds: Sequence[float] | np.ndarray) -> LatencyStats:
        if len(seconds) == 0:
            nan = float("nan")
            return LatencyStats(nan, nan, nan, nan, nan, nan)
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
        return LatencyStats(float(p50), float(p90), float(p95), float(p99), float(ms.mean()), float(ms.max()))


@dataclass(frozen=True)
class ServerStats:
    """What Triton's statistics say happened during the measurement window (differences of two snapshots)."""

    inferences: int  # items run (a request of batch 4 counts 4)
    executions: int  # model executions: fewer than inferences means the server batched requests together
    requests: int
    avg_batch: float  # inferences / executions: the batch size the model actually ran at
    queue_ms: float  # mean per request: waiting for the dynamic batcher or a free instance
    compute_ms: float  # mean per request: input copy + model execution + output copy of the batch it ran in
    server_ms: float  # mean per request: everything from arrival to response inside the server
    batch_sizes: dict[int, int] = field(default_factory=dict)  # executed batch size -> executions


@dataclass(frozen=True)
class LoadPoint:
    """One concurrency level: `concurrency` requests always in flight for the measurement window."""

    concurrency: int
    batch_size: int  # items per request
    seconds: float  # length of the measurement window: from its first request sent to its last answer
    requests: int  # successful requests sent within the window (each one answered before it closed)
    errors: int
    throughput: float  # inferences (items) per second
    latency: LatencyStats
    server: ServerStats | None
    client_cpu_us_per_request: float  # CPU time of the load generator (all its threads) per request
    client_cpu_share: float  # the generator's CPU time as a fraction of all the machine's CPUs
    machine_busy: float | None  # fraction of all CPUs busy (everything: server, client, others), from /proc/stat
    first_error: str | None = None
    generator: str = "python"  # which load generator measured it: python | h2load
    # A pipeline's steps in the same window (each step model's statistics): where a request's time goes.
    steps: dict[str, ServerStats] = field(default_factory=dict)

    @property
    def requests_per_cpu_s(self) -> float:
        """Requests the generator sent per second of its own CPU time: its headroom, whatever the machine."""
        us = self.client_cpu_us_per_request
        return 1e6 / us if us > 0 and math.isfinite(us) else float("nan")


@dataclass(frozen=True)
class Ceiling:
    """In-process ONNX Runtime throughput of the same ONNX file: what the served model can at best approach."""

    onnx: str
    sessions: int  # parallel sessions, as many as the config's instances
    intra_op_threads: int  # per session, as the served model.py sets them
    batch_size: int  # the best one
    throughput: float  # items/s at that batch size
    by_batch: dict[int, float]  # batch size -> items/s
    latency_ms: dict[int, float]  # batch size -> mean ms per run (one session alone)


@dataclass(frozen=True)
class GeneratorCheck:
    """Evidence that the load generator is not what limits throughput."""

    cpu_us_per_request: float  # at the best point
    client_cpu_share: float  # at the best point
    requests_per_core_s: float  # requests/s the generator could send with a whole core to itself
    noop_model: str | None = None
    noop_concurrency: int | None = None
    noop_throughput: float | None = None  # items/s of a model that does nothing, same inputs, same config
    noop_note: str | None = None
    generator: str = "python"  # the generator of the load points: python | h2load
    noop_requests_per_cpu_s: float | None = None  # the generator's requests per CPU-second on the no-op model
    # The Python generator on the same no-op model in the same run, when h2load measured the points: the headroom
    # the native generator adds, measured side by side.
    python_noop_throughput: float | None = None
    python_requests_per_cpu_s: float | None = None

    @property
    def headroom_gain(self) -> float | None:
        """The generator's requests per client CPU-second over the Python generator's, on the no-op model."""
        if not self.noop_requests_per_cpu_s or not self.python_requests_per_cpu_s:
            return None
        return self.noop_requests_per_cpu_s / self.python_requests_per_cpu_s


@dataclass(frozen=True)
class BenchReport:
    model: str
    version: str
    server: str
    served_by: str
    protocol: str
    batch_size: int
    lengths: dict[str, int]
    duration_s: float | None
    requests_per_point: int | None
    config: dict[str, Any]  # instances, max_batch_size, max_queue_delay_us, preferred_batch_sizes
    points: tuple[LoadPoint, ...]
    ceiling: Ceiling | None
    generator: GeneratorCheck | None
    cpus: int
    load_average: tuple[float, float, float]  # before the run: other work on the machine skews every number
    started: str
    notes: tuple[str, ...] = ()
    load_generator: str = "python"  # what drove the load, in words (generator, version, protocol)

    @property
    def best(self) -> LoadPoint | None:
        ok = [p for p in self.points if p.requests > 0]
        return max(ok, key=lambda p: p.throughput) if ok else None

    @property
    def fraction_of_ceiling(self) -> float | None:
        best = self.best
        if best is None or self.ceiling is None or self.ceiling.throughput <= 0:
            return None
        return best.throughput / self.ceiling.throughput

    def point(self, concurrency: int) -> LoadPoint | None:
        return next((p for p in self.points if p.concurrency == concurrency), None)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        generator = asdict(self.generator) | {"headroom_gain": self.generator.headroom_gain} if self.generator else None
        return json_safe({"ok": True, **asdict(self), "generator": generator,
                          "best_concurrency": best.concurrency if best else None,
                          "best_throughput": best.throughput if best else None,
                          "fraction_of_ceiling": self.fraction_of_ceiling})
