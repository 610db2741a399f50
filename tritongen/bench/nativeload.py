"""A measurement window driven by h2load, with the same guarantees as the Python generator's windows.

Each h2load run sends a fixed number of requests and ends when all are answered, so nothing is in flight between
runs: a short run to learn the rate, a settling run (fills the batcher's pipeline), a statistics snapshot once the
server has recorded every request sent so far, the measured run (as many requests as the rate fills the window
with), and the snapshot after it. Triton's statistics then describe exactly the requests of the window.

Every response must be a success. HTTP/1.1 answers carry their status; gRPC answers carry theirs in trailers, which
h2load does not read, so a gRPC window counts its successes twice, from the bytes of response data (every successful
answer has the probe's size, an error none) and from Triton's `success` count. A window with any failure is measured
again by the Python generator, which tells each request's outcome and error text apart.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tritongen.bench import h2load as tool
from tritongen.bench.report import LatencyStats, LoadPoint
from tritongen.bench.requests import WireRequest, probe, wire_request
from tritongen.bench.settings import REQUEST_TIMEOUT_S, LoadSettings
from tritongen.bench.stats import (
    all_recorded,
    busy_fraction,
    cpu_times,
    server_stats,
    stat_totals,
    statistics_name,
    step_stats,
)
from tritongen.bench.workload import Workload
from tritongen.errors import TritongenError

CALIBRATION_PER_CLIENT = 2  # requests per connection of the first, rate-finding run (2: a slow model waits little)


class Statistics:
    """Triton's per-model statistics over the protocol being measured (a synchronous client, one per window)."""

    def __init__(self, protocol: str, url: str) -> None:
        if protocol == "grpc":
            import tritonclient.grpc as client
        else:
            import tritonclient.http as client  # type: ignore[no-redef]
        self.grpc = protocol == "grpc"
        self.client = client.InferenceServerClient(url)

    def snapshot(self, model: str) -> dict[str, Any] | None:
        try:
            if self.grpc:
                return self.client.get_inference_statistics(model, as_json=True)
            return self.client.get_inference_statistics(model)
        except Exception:  # a server without the statistics extension: the point simply has no server stats
            return None

    def recorded(self, model: str, since: Mapping[str, Any] | None, sent: int, steps: tuple[str, ...] = (),
                 wait_s: float = 2.0) -> dict[str, Any] | None:
        """A snapshot once the server has recorded `sent` requests since `since` (Triton updates its statistics just
        after it answers). Another client of the same server can keep the count from matching: give up after
        `wait_s`."""
        deadline = time.perf_counter() + wait_s
        while True:
            now = self.snapshot(statistics_name(model, steps))
            if since is None or now is None or all_recorded(since, now, (model, *steps), sent) \
                    or time.perf_counter() >= deadline:
                return now
            time.sleep(0.01)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


@contextlib.contextmanager
def _window_files() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tritongen-h2load-") as folder:
        yield Path(folder)


def measure_with_h2load(h2load: tool.H2Load, url: str, workload: Workload, concurrency: int,
                        settings: LoadSettings, model: str | None = None) -> LoadPoint | None:
    """One window at `concurrency` driven by h2load; None when a request failed (the caller measures it again with
    the Python generator, which can say which request failed and why)."""
    model = model or workload.model
    request = wire_request(settings.protocol, url, model, workload)
    stats = Statistics(settings.protocol, url)
    try:
        start = stats.snapshot(statistics_name(model, workload.steps))  # before the probe, which the server counts
        answer = probe(request)
        if not answer.ok:
            if answer.unreachable:
                raise TritongenError(f"the server at {url} stopped answering while benchmarking '{model}': "
                                     f"{answer.error}", "check that the server is running; see its log")
            return None
        with _window_files() as folder:
            return _window(h2load, request, answer.response_bytes, stats, start, model, workload, concurrency,
                           settings, folder)
    finally:
        stats.close()


def _window(h2load: tool.H2Load, request: WireRequest, response_bytes: int, stats: Statistics,
            start: Mapping[str, Any] | None, model: str, workload: Workload, concurrency: int, settings: LoadSettings,
            folder: Path) -> LoadPoint | None:
    def send(n: int, expected_s: float) -> tool.Run:
        return tool.run(h2load, request, concurrency, n, folder, timeout_s=REQUEST_TIMEOUT_S + 5 * expected_s)

    sent = 1  # the probe
    rate: float | None = None  # requests/s at this concurrency
    if settings.duration_s is not None or settings.settle() > 0:
        first = send(concurrency * CALIBRATION_PER_CLIENT, 1.0)
        sent += first.requested
        if not _all_answered(first, request, response_bytes):
            return None
        rate = first.requested / max(first.seconds, 1e-6)
    if settings.settle() > 0 and rate is not None:
        settle = send(_requests_for(rate * settings.settle(), concurrency), settings.settle())
        sent += settle.requested
        if not _all_answered(settle, request, response_bytes):
            return None
        rate = settle.requested / max(settle.seconds, 1e-6)
    before = stats.recorded(model, start, sent, workload.steps)
    if settings.duration_s is not None and rate is not None:
        n = _requests_for(rate * settings.duration_s, concurrency)
        if settings.requests:
            n = min(n, _requests_for(settings.requests, concurrency))
    else:
        n = _requests_for(settings.requests or concurrency, concurrency)
    busy0 = cpu_times()
    window = send(n, settings.duration_s or 1.0)
    busy1 = cpu_times()
    after = stats.recorded(model, before, window.requested, workload.steps)
    if not _all_answered(window, request, response_bytes):
        return None
    served = server_stats(before, after, model)
    if served is not None and (served.requests < window.requested or _failures(before, after, model)):
        # Triton counted fewer successes than h2load had answers, or failures: some answers were errors.
        return None
    seconds = window.seconds
    cpus = os.cpu_count() or 1
    n_ok = window.requested
    return LoadPoint(
        concurrency=concurrency, batch_size=workload.batch_size, seconds=seconds, requests=n_ok, errors=0,
        throughput=n_ok * workload.batch_size / seconds if seconds > 0 else 0.0,
        latency=LatencyStats.of(window.durations_us / 1e6), server=served,
        client_cpu_us_per_request=window.cpu_s / n_ok * 1e6 if n_ok else float("nan"),
        client_cpu_share=window.cpu_s / (seconds * cpus) if seconds > 0 else 0.0,
        machine_busy=busy_fraction(busy0, busy1), generator="h2load", steps=step_stats(before, after, workload.steps))


def _requests_for(target: float, concurrency: int) -> int:
    """At least one request per connection, and the same number on every connection (all stay busy to the end)."""
    per_client = max(1, math.ceil(target / concurrency))
    return per_client * concurrency


def _all_answered(run: tool.Run, request: WireRequest, response_bytes: int) -> bool:
    """Every request of the run was answered with a success (see the module doc for gRPC)."""
    if run.failed or run.done != run.requested or len(run.statuses) != run.requested:
        if run.done == 0:
            raise TritongenError(f"h2load could not reach the server at {request.address} (0 of {run.requested} "
                                 "requests answered)", "check that the server is running; see its log")
        return False
    if not run.completed.all():
        return False
    return request.protocol != "grpc" or run.data_bytes == run.requested * response_bytes


def _failures(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, model: str) -> int:
    if before is None or after is None:
        return 0
    a, b = stat_totals(before, model) or {}, stat_totals(after, model) or {}
    return b.get("fail.count", 0) - a.get("fail.count", 0)
