"""Measurement windows on the real embedded tritonserver, driven by h2load (gRPC over h2c, HTTP/1.1) and by the
Python generator: the requests a window counts are exactly the ones Triton's statistics count, every answer is a
success, and a window with failed requests is measured again by the Python generator, which says why."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tritongen.bench import LoadPoint, LoadSettings, Workload, make_workload, measure_point, model_spec
from tritongen.bench.nativeload import measure_with_h2load
from tritongen.bench.requests import grpc_request, http_request, probe, wire_request

pytestmark = pytest.mark.server


def workload_of(served: Any, repository: Path, model: str, batch_size: int = 1, lengths: dict | None = None
                ) -> Workload:
    """Inputs for `model` from the spec its build recorded (named axes H, W), at the batch size served."""
    return make_workload(model, model_spec(repository / model, served.model(model).config), batch_size, lengths)


def check_window(point: LoadPoint, batch_size: int = 1) -> None:
    """The window's requests are exactly the ones Triton recorded, all of them successes."""
    assert point.requests > 0 and point.errors == 0 and point.first_error is None
    assert point.server is not None
    assert point.server.requests == point.requests
    assert point.server.inferences == point.requests * batch_size
    assert sum(size * n for size, n in point.server.batch_sizes.items()) == point.server.inferences
    assert 0 < point.latency.p50 <= point.latency.p90 <= point.latency.p99 <= point.latency.max
    assert point.throughput == pytest.approx(point.requests * batch_size / point.seconds)
    assert point.client_cpu_us_per_request > 0 and 0 < point.client_cpu_share < 1


def test_h2load_grpc_window_agrees_with_the_server_statistics(h2load: Any, served: Any, repository: Path) -> None:
    settings = LoadSettings(protocol="grpc", duration_s=1.0, generator="h2load")
    point = measure_point(served.handle.grpc_url, workload_of(served, repository, "cnn"), 8, settings)
    assert point.generator == "h2load"
    check_window(point)
    assert point.requests % 8 == 0  # the same number of requests on every connection: all 8 busy to the end


def test_h2load_http_window_with_batches_and_dynamic_axes(h2load: Any, served: Any, repository: Path) -> None:
    settings = LoadSettings(protocol="http", duration_s=None, requests=30, generator="h2load")
    point = measure_point(served.handle.http_url, workload_of(served, repository, "fcn", 2, {"H": 12, "W": 10}), 4, settings)
    assert point.generator == "h2load" and point.requests == 32  # 30 rounded up to 8 per connection
    check_window(point, batch_size=2)
    assert all(size % 2 == 0 for size in point.server.batch_sizes)  # requests of 2 items are never split


def test_the_python_generator_agrees_too(served: Any, repository: Path) -> None:
    settings = LoadSettings(protocol="grpc", duration_s=0.5, generator="python")
    point = measure_point(served.handle.grpc_url, workload_of(served, repository, "cnn"), 4, settings)
    assert point.generator == "python"
    check_window(point)


def test_the_bytes_h2load_replays_are_answered_like_tritonclients(h2load: Any, served: Any, repository: Path) -> None:
    workload = workload_of(served, repository, "cnn")
    for request in (grpc_request(served.handle.grpc_url, "cnn", workload),
                    http_request(served.handle.http_url, "cnn", workload)):
        answer = probe(request)
        assert answer.ok and answer.response_bytes > 10 * 4  # ten float logits at least
    bad = replace(workload, inputs={"image": np.zeros((1, 3, 8, 8), np.float32)})
    answer = probe(grpc_request(served.handle.grpc_url, "cnn", bad))
    assert not answer.ok and not answer.unreachable and "INVALID_ARGUMENT" in (answer.error or "")


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_failed_requests_are_counted_with_the_servers_reason(h2load: Any, served: Any, repository: Path, protocol: str) -> None:
    """Every request has the wrong image size: no window passes for a measurement, and the error says why."""
    workload = workload_of(served, repository, "cnn")
    bad = replace(workload, inputs={"image": np.zeros((1, 3, 8, 8), np.float32)})
    url = served.handle.grpc_url if protocol == "grpc" else served.handle.http_url
    point = measure_point(url, bad, 2, LoadSettings(protocol=protocol, duration_s=None, requests=6, generator="h2load"))
    assert point.requests == 0 and point.errors >= 6 and point.throughput == 0
    assert point.first_error is not None and "image" in point.first_error


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_window_with_some_failed_answers_is_measured_again_by_the_python_generator(
        h2load: Any, served: Any, repository: Path, protocol: str) -> None:
    """`flaky` answers every third request with an error, after a first request that succeeds (h2load's probe): h2load
    sees the failures (gRPC: answers without data and Triton's failure count; HTTP: status 500), and the Python
    generator, which reads each answer, measures the window and says why requests failed."""
    workload = replace(workload_of(served, repository, "cnn"), model="flaky")
    url = served.handle.grpc_url if protocol == "grpc" else served.handle.http_url
    settings = LoadSettings(protocol=protocol, duration_s=None, requests=30, generator="h2load")
    for _ in range(3):  # up to the next failure: the probe that comes next succeeds, h2load's run meets failures
        if not probe(wire_request(protocol, url, "flaky", workload)).ok:
            break
    assert measure_with_h2load(h2load, url, workload, 3, settings) is None
    point = measure_point(url, workload, 3, settings)
    assert point.generator == "python"
    assert point.requests > 0 and point.errors > 0
    assert point.errors == pytest.approx((point.requests + point.errors) / 3, abs=2)
    assert "every third request fails" in (point.first_error or "")
