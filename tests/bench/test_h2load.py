"""What tritongen reads from h2load (its per-request log and its summary) and the command line it runs.
Runs against a real server are in test_load.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.reports import WORKLOAD
from tritongen.bench import h2load as tool
from tritongen.bench.requests import grpc_request, http_request
from tritongen.errors import TritongenError

# nghttp2 1.52.0's summary of a gRPC run against Triton (2,000 answers of 75 bytes of data each).
SUMMARY = """starting benchmark...
spawning thread #0: 16 total client(s). 2000 total requests
Application protocol: h2c

finished in 527.53ms, 3791.22 req/s, 446.36KB/s
requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 2000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 235.47KB (241120) total, 7.03KB (7200) headers (space savings 95.56%), 146.48KB (150000) data
                     min         max         mean         sd        +/- sd
time for request:      771us     12.07ms      4.09ms      1.03ms    77.00%
"""


def test_summary_counts() -> None:
    assert tool.parse_summary(SUMMARY) == {"total": 2000, "done": 2000, "failed": 0, "data_bytes": 150000}
    refused = SUMMARY.replace("2000 started, 2000 done, 2000 succeeded, 0 failed", "0 started, 0 done, 0 succeeded, 4 failed")
    assert tool.parse_summary(refused)["failed"] == 4 and tool.parse_summary(refused)["done"] == 0
    with pytest.raises(TritongenError, match="h2load's output was not understood"):
        tool.parse_summary("segmentation fault")


def test_log_gives_the_window_and_each_latency() -> None:
    starts, durations, statuses = tool.parse_log("1000000\t200\t2500\n1000100\t200\t3000\n1001000\t-1\t10\n")
    assert list(starts) == [1000000, 1000100, 1001000] and list(statuses) == [200, 200, -1]
    run = tool.Run(starts, durations, statuses, 3, 3, 0, 0, 0.01)
    assert run.seconds == pytest.approx((1000100 + 3000 - 1000000) / 1e6)  # first start to the last answer
    assert list(run.completed) == [True, True, False]
    empty = tool.parse_log("")
    assert all(len(a) == 0 for a in empty) and tool.Run(*empty, 0, 0, 0, 0, 0.0).seconds == 0


def test_command_keeps_exactly_concurrency_requests_in_flight(tmp_path: Path) -> None:
    h2load = tool.H2Load("/usr/bin/h2load", "1.52.0")
    grpc = tool.command(h2load, grpc_request("127.0.0.1:8001", "two", WORKLOAD), 16, 3200, tmp_path / "b", tmp_path / "l")
    assert grpc[:9] == ["/usr/bin/h2load", "-n", "3200", "-c", "16", "-m", "1", "-t", "1"]
    assert "--h1" not in grpc and grpc[-1] == "http://127.0.0.1:8001/inference.GRPCInferenceService/ModelInfer"
    assert ["-H", "content-type: application/grpc"] == grpc[grpc.index("content-type: application/grpc") - 1:][:2]
    http = tool.command(h2load, http_request("127.0.0.1:8000", "two", WORKLOAD), 4, 40, tmp_path / "b", tmp_path / "l")
    assert "--h1" in http and http[-1] == "http://127.0.0.1:8000/v2/models/two/infer"
    assert any(a.startswith("Inference-Header-Content-Length: ") for a in http)
    assert "gRPC over HTTP/2" in h2load.describe("grpc") and "HTTP/1.1" in h2load.describe("http")


def test_h2load_is_found_on_path_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert tool.find_h2load() is None
    fake = tmp_path / "h2load"  # a program of that name that is not nghttp2's: not taken for it
    fake.write_text("#!/bin/sh\necho something else\n")
    fake.chmod(0o755)
    assert tool.find_h2load() is None
    fake.write_text("#!/bin/sh\necho 'h2load nghttp2/9.9.9'\n")
    assert tool.find_h2load() == tool.H2Load(str(fake), "9.9.9")
