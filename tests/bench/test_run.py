"""`bench` against the real embedded tritonserver: a short sweep, the report folder, HTTP, fixed request counts,
dynamic axes, a server started elsewhere (--url), and the one-line errors for bad options."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from tests.servers import consecutive_free_ports
from tritongen.bench import LoadSettings, bench_model
from tritongen.errors import TritongenError
from tritongen.server.stage import PYTHON_RUNNER


def check_point_is_sane(point: dict, batch_size: int = 1) -> None:
    assert point["requests"] > 0 and point["errors"] == 0 and point["throughput"] > 0
    latency = point["latency"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    server = point["server"]
    assert server["executions"] >= 1 and server["avg_batch"] >= 1
    # The window opens and closes with nothing in flight, so the server counted exactly the client's requests, and
    # every executed batch holds whole requests: the sizes Triton reports add up to its inference count.
    assert server["requests"] == point["requests"]
    assert server["inferences"] == point["requests"] * batch_size
    assert sum(size * n for size, n in ((int(k), v) for k, v in server["batch_sizes"].items())) == server["inferences"]
    assert server["queue_ms"] >= 0 and server["compute_ms"] > 0
    assert 0 < point["client_cpu_share"] < 1 and point["client_cpu_us_per_request"] > 0
    assert point["batch_size"] == batch_size


@pytest.mark.server
def test_bench_sweeps_concurrency_and_writes_a_report(cli: Callable[..., CliResult], repository: Path,
                                                      tmp_path: Path, h2load: Any) -> None:
    result = cli("bench", "cnn", "--repository", repository, "--concurrency", "4,1", "--duration", "1",
                 "--warmup", "0.5", "--generator", "h2load", "--report", tmp_path / "report", "--json")
    assert result.exit_code == 0, result.stderr
    report = result.json()
    assert report["ok"] and report["model"] == "cnn" and report["version"] == "1"
    assert report["served_by"] == PYTHON_RUNNER and report["protocol"] == "grpc"
    assert [p["concurrency"] for p in report["points"]] == [1, 4]
    assert report["load_generator"].startswith(f"h2load (nghttp2 {h2load.version}, gRPC over HTTP/2")
    for point in report["points"]:
        check_point_is_sane(point)
        assert point["generator"] == "h2load"
    # One request in flight can never be batched with another.
    assert report["points"][0]["server"]["avg_batch"] == 1
    assert report["config"] | {"intra_op_threads": 0} == {
        "instances": 1, "max_batch_size": 32, "dynamic_batching": True, "max_queue_delay_us": 100,
        "preferred_batch_sizes": [], "intra_op_threads": 0}
    ceiling = report["ceiling"]
    assert ceiling["throughput"] > 0 and ceiling["batch_size"] in (1, 2, 4, 8, 16, 32)
    assert set(ceiling["by_batch"]) == {"1", "2", "4", "8", "16", "32"}
    assert 0 < report["fraction_of_ceiling"] == pytest.approx(report["best_throughput"] / ceiling["throughput"])
    generator = report["generator"]
    assert generator["noop_model"] == "tritongen_noop_cnn" and generator["noop_throughput"] > 0
    assert generator["requests_per_core_s"] > 0
    # The headroom check: the no-op model under h2load, and under the Python generator in the same run, each with
    # its own CPU time per request. How far apart they are is measured by benchmarks/served_throughput.py, not here:
    # in this test's short windows on a busy 2-core machine it has ranged from 1.7x to 8x.
    assert generator["generator"] == "h2load" and generator["python_noop_throughput"] > 0
    assert generator["noop_requests_per_cpu_s"] > 0 and generator["python_requests_per_cpu_s"] > 0
    assert generator["headroom_gain"] == pytest.approx(generator["noop_requests_per_cpu_s"]
                                                       / generator["python_requests_per_cpu_s"])
    assert any("python backend" in note for note in report["notes"])

    files = {Path(f).name for f in report["report_files"]}
    assert files == {"report.md", "report.json", "bench.png"}
    folder = tmp_path / "report"
    assert (folder / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((folder / "report.json").read_text())["points"] == report["points"]
    markdown = (folder / "report.md").read_text()
    for heading in ("## Summary", "## Per concurrency level", "## Is the load generator the bottleneck?",
                    "## In-process ONNX Runtime by batch size", "![throughput and p99 latency"):
        assert heading in markdown
    assert "{{" not in markdown and "{%" not in markdown
    assert "The load generator is h2load (nghttp2" in markdown and "the Python generator, in the same run" in markdown
    assert "concurrency 4" in result.stderr  # progress goes to stderr: stdout held only the JSON object


@pytest.mark.server
def test_bench_over_http_with_a_request_count_batches_and_dynamic_axes(repository: Path) -> None:
    report = bench_model(repository, "fcn", concurrencies=(2,), batch_size=2, lengths={"H": 12, "W": 10},
                         settings=LoadSettings(protocol="http", duration_s=None, requests=40, generator="python"),
                         warmup_s=0.3,
                         ceiling_seconds_per_size=0.1, generator_check=False)
    assert report.protocol == "http" and report.served_by == "python backend"
    assert report.load_generator.startswith("python (one asyncio event loop") and report.points[0].generator == "python"
    assert report.lengths == {"H": 12, "W": 10} and report.batch_size == 2
    (point,) = report.points
    assert point.requests >= 40 and point.errors == 0
    assert point.throughput == pytest.approx(point.requests * 2 / point.seconds)
    assert point.server is not None and point.server.inferences >= 2 * 40
    assert all(size % 2 == 0 for size in point.server.batch_sizes)  # requests of 2 items are never split
    assert report.ceiling is not None and set(report.ceiling.by_batch) == {1, 2, 4, 8}
    assert report.generator is not None and report.generator.noop_throughput is None
    assert not any("python backend (the embedded" in n for n in report.notes)  # a python model, not a staged one


@pytest.mark.server
def test_bench_against_a_server_already_running(repository: Path, tmp_path: Path) -> None:
    from tritongen.server import launch
    from tritongen.server.local import find_tritonserver
    from tritongen.server.stage import stage_repository

    staged = stage_repository(repository, tmp_path / "staged", backends=find_tritonserver().backend_names,
                              models=["cnn"])
    with launch(staged.path, ports=consecutive_free_ports()) as handle:  # a URL names HTTP; gRPC is on the next port
        report = bench_model(repository, "cnn", server=handle.http_url, concurrencies=(2,),
                             settings=LoadSettings(duration_s=0.5), warmup_s=0, ceiling_seconds_per_size=0.1)
    assert report.server == f"Triton at {handle.http_url} (gRPC {handle.grpc_url})"
    assert report.points[0].requests > 0 and report.ceiling is not None
    assert report.generator is not None and report.generator.noop_throughput is None
    assert "cannot be given one" in (report.generator.noop_note or "")


@pytest.mark.parametrize("args, message", [
    (("--batch-size", "64"), "--batch-size 64 is above the model's max_batch_size 32"),
    (("--length", "seq=8"), "--length names axis 'seq', which no input of 'cnn' has"),
    (("--concurrency", "0,4"), "malformed --concurrency '0,4'"),
    (("--duration", "1", "--requests", "5"), "--duration and --requests were both given"),
    (("--length", "seq"), "malformed --length 'seq'"),
])
def test_bad_options_fail_in_one_line_before_any_server_starts(cli: Callable[..., CliResult], configs: Path,
                                                               args: tuple[str, ...], message: str) -> None:
    result = cli("bench", "cnn", "--repository", configs, *args, "--no-report")
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "starting the embedded tritonserver" not in result.stderr


def test_unknown_model_names_the_ones_there(cli: Callable[..., CliResult], configs: Path) -> None:
    result = cli("bench", "nope", "--repository", configs, "--no-report")
    assert result.exit_code == 2 and "model 'nope' is not in" in result.stderr and "cnn" in result.stderr


def test_bench_needs_a_repository_or_a_url() -> None:
    with pytest.raises(TritongenError, match="needs --repository"):
        bench_model(None, "cnn")


def test_h2load_asked_for_but_missing_is_one_line_before_any_server_starts(
        cli: Callable[..., CliResult], configs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tritongen.bench import describe_generator

    monkeypatch.setenv("PATH", str(tmp_path))  # no h2load on it
    result = cli("bench", "cnn", "--repository", configs, "--generator", "h2load", "--no-report")
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert "--generator h2load: h2load is not installed" in result.stderr and "nghttp2-client" in result.stderr
    assert "starting the embedded tritonserver" not in result.stderr
    assert describe_generator(LoadSettings(generator="auto")).startswith("python (")  # auto falls back
