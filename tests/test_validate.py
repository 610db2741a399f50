"""`validate` against the real embedded tritonserver: both formats, both protocols, batching, bad requests, failures."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.servers import (
    add_tensorrt_model,
    as_if_built,
    built_repository,
    consecutive_free_ports,
    copy_repository,
    group_members,
    tritonserver_pids,
    wait_until_gone,
)
from tritongen.errors import TritongenError
from tritongen.server import launch
from tritongen.server.base import ServerHandle
from tritongen.server.stage import PYTHON_RUNNER
from tritongen.validate import ValidationReport, config_differences, validate_repository

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`two` and `scaled` (onnx), `two_python` (python) and `plan` (TensorRT, which the embedded server lacks)."""
    repo = copy_repository(built_repository(tmp_path_factory, "two"), tmp_path_factory.mktemp("validate") / "repo")
    add_tensorrt_model(repo)
    return repo


@pytest.fixture(scope="module")
def report(repository: Path) -> ValidationReport:
    return validate_repository(repository)


@pytest.fixture(scope="module")
def running(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerHandle, Path]]:
    """A server already running on the python-format model, for `--server URL` runs (no start per test)."""
    python_only = copy_repository(repository, tmp_path_factory.mktemp("running") / "repo", ("two_python",))
    with launch(python_only, ports=consecutive_free_ports()) as handle:
        yield handle, python_only


def models_by_name(report: ValidationReport) -> dict:
    return {m.name: m for m in report.models}


@pytest.mark.parametrize("name, served_by", [("two", PYTHON_RUNNER), ("two_python", "python backend")])
def test_every_check_passes_for_both_formats(report: ValidationReport, name: str, served_by: str) -> None:
    model = models_by_name(report)[name]
    assert (model.state, model.version, model.served_by, model.passed) == ("READY", 1, served_by, True)
    assert model.config.passed and model.config.differences == ()
    for check in (model.http, model.grpc):
        assert check.passed and [o.name for o in check.outputs] == ["output_0", "output_1"]
        assert all(o.max_abs_err <= 1e-4 for o in check.outputs)  # the build's atol, against PyTorch's outputs
    batching = model.batching
    assert batching.checked and batching.passed and batching.outputs_match
    assert batching.inferences == batching.requests and 0 < batching.executions < batching.inferences


def test_per_item_scalars_are_sent_and_compared_as_the_config_writes_them(report: ValidationReport) -> None:
    """dims [1] with reshape [] in the config: clients send [batch, 1] while the model sees [batch]."""
    scaled = models_by_name(report)["scaled"]
    assert scaled.passed, scaled.failures()
    assert scaled.served_by == PYTHON_RUNNER and scaled.batching.executions < scaled.batching.inferences


def test_bad_requests_are_refused_with_the_servers_reason(report: ValidationReport) -> None:
    model = models_by_name(report)["two"]
    refused = {(b.case, b.protocol): b.server_error for b in model.bad_requests}
    assert len(refused) == 8 and all(b.passed for b in model.bad_requests)
    for protocol in ("http", "grpc"):
        assert "data-type is 'FP64', but model 'two' expects 'FP32'" in refused["wrong dtype", protocol]
        assert "unexpected shape for input 'x'" in refused["wrong shape", protocol]
        assert "batch-size must be <= 32" in refused["batch above max_batch_size", protocol]
        assert "unexpected inference input 'tritongen_no_such_input'" in refused["unknown input name", protocol]
    assert model.ready_after_bad_requests is True


def test_a_model_the_server_cannot_serve_is_skipped_and_fails_the_run(report: ValidationReport) -> None:
    plan = models_by_name(report)["plan"]
    assert (plan.state, plan.passed, plan.served_by) == ("SKIPPED", False, None)
    assert "tensorrt backend" in plan.skipped_reason and "--server docker" in plan.skipped_reason
    assert report.passed is False


def test_the_report_is_plain_json(report: ValidationReport) -> None:
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["server"].startswith("embedded tritonserver 2.51") and data["passed"] is False
    two = next(m for m in data["models"] if m["name"] == "two")
    assert {"name", "version", "state", "served_by", "http", "grpc", "batching", "bad_requests",
            "skipped_reason"} <= set(two)
    assert two["grpc"]["outputs"][0]["passed"] is True and two["batching"]["executions"] > 0


def test_cli_against_a_running_server_exits_0_when_all_pass(running: tuple[ServerHandle, Path], cli) -> None:
    handle, repo = running
    result = cli("validate", repo, "--server", handle.http_url, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    data = result.json()
    assert data["passed"] is True and data["server"].startswith("Triton at")
    assert data["models"][0]["served_by"] == "python backend"


def test_cli_exits_1_when_served_outputs_differ_from_pytorch(running: tuple[ServerHandle, Path], tmp_path: Path,
                                                             cli) -> None:
    handle, repo = running
    tampered = copy_repository(repo, tmp_path / "repo")
    reference = tampered / "two_python" / "1" / "tritongen" / "reference.npz"
    arrays = dict(np.load(reference))
    arrays["outputs/output_0"] = arrays["outputs/output_0"] + 0.5  # as if PyTorch had said something else
    np.savez(reference, **arrays)
    result = cli("validate", tampered, "--server", handle.http_url, "--protocol", "grpc")
    assert result.exit_code == 1
    assert "✗ two_python v1" in result.stdout and "output_0 max abs err 0.5" in result.stdout
    assert "FAILED: 1 of 1 model(s)" in result.stdout


def test_cli_exits_2_on_bad_input(repository: Path, tmp_path: Path, cli) -> None:
    missing = cli("validate", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    unknown = cli("validate", repository, "--model", "nope")
    assert unknown.exit_code == 2 and "model 'nope' is not in" in unknown.stderr and "two_python" in unknown.stderr


def test_cli_names_the_users_file_when_a_model_fails_to_load(repository: Path, tmp_path: Path, cli) -> None:
    broken = copy_repository(repository, tmp_path / "repo", ("two",))
    onnx_file = broken / "two" / "1" / "model.onnx"
    onnx_file.write_bytes(b"truncated")
    as_if_built(onnx_file.parent)  # a bad file the build wrote: the server's load fails, not the files check
    before = set(tritonserver_pids())  # the module's running server, if started
    result = cli("validate", broken)
    assert result.exit_code == 2
    assert "failed to load 'two' version 1" in result.stderr and str(onnx_file) in result.stderr
    assert "tritongen-stage-" not in result.stderr  # the staged copy is our business, not the user's
    assert set(tritonserver_pids()) == before


def test_a_server_killed_mid_validation_gives_a_clear_error_and_leaves_nothing(repository: Path) -> None:
    killed: list[int] = []
    before = set(tritonserver_pids())

    def kill_during_grpc(message: str) -> None:
        if "inference over GRPC" in message and not killed:
            (pid,) = set(tritonserver_pids()) - before
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)  # what an OOM killer or a crash does

    with pytest.raises(TritongenError) as info:
        validate_repository(repository, models=["two_python"], on_progress=kill_during_grpc)
    message = info.value.message
    assert "exited with signal SIGKILL while validating model 'two_python' (inference over GRPC)" in message
    assert wait_until_gone(killed, 1) == [] and group_members(killed[0]) == []
    assert set(tritonserver_pids()) == before


def test_config_differences_ignore_what_triton_fills_in() -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    def parse(text: str):
        return text_format.Parse(text, model_config_pb2.ModelConfig())

    written = parse('max_batch_size: 8 input { name: "x" data_type: TYPE_FP32 dims: [4] } '
                    "instance_group { count: 2 kind: KIND_CPU } dynamic_batching { max_queue_delay_microseconds: 100 }")
    served = parse('name: "m" max_batch_size: 8 input { name: "x" data_type: TYPE_FP32 dims: [4] } '
                   'instance_group { name: "m_0" count: 2 kind: KIND_CPU } '
                   "dynamic_batching { preferred_batch_size: [8] max_queue_delay_microseconds: 100 } "
                   "optimization { input_pinned_memory { enable: true } }")
    assert config_differences(written, served) == []
    served.input[0].dims[0] = 5
    served.instance_group[0].kind = model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert config_differences(written, served) == ["input[0].dims: wrote [4], server has [5]",
                                                   "instance_group[0].kind: wrote KIND_CPU, server has KIND_GPU"]


def test_a_model_py_planted_next_to_an_onnx_model_never_runs(repository: Path, tmp_path: Path, cli) -> None:
    planted = copy_repository(repository, tmp_path / "repo", ("two",))
    marker = tmp_path / "planted-code-ran"
    (planted / "two" / "1" / "model.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                                    "class TritonPythonModel:\n    pass\n")
    result = cli("validate", planted, "--json")
    assert result.exit_code == 1
    (two,) = result.json()["models"]
    assert two["state"] == "UNVERIFIED" and two["passed"] is False
    assert "two/1/model.py was not written by the build" in two["problem"]
    assert not marker.exists()


def test_a_python_model_changed_after_the_build_fails_with_the_reason(repository: Path, tmp_path: Path, cli) -> None:
    tampered = copy_repository(repository, tmp_path / "repo", ("two_python", "scaled"))
    model_py = tampered / "two_python" / "1" / "model.py"
    model_py.write_text(model_py.read_text() + "\nimport os  # an edit the build did not make\n")
    result = cli("validate", tampered)
    assert result.exit_code == 1
    assert "✗ two_python  UNVERIFIED" in result.stdout
    assert f"{model_py} changed after the build (its sha256 is not the one in the manifest)" in result.stdout
    assert "✓ scaled v1" in result.stdout  # the other model is served and checked as usual
    assert "FAILED: 1 of 2 model(s) did not pass" in result.stdout


def test_a_leftover_build_folder_fails_as_it_would_stop_a_real_server(repository: Path, tmp_path: Path, cli) -> None:
    """A killed build's scratch folder: a tritonserver started on the repository as the compose file does refuses
    to start; validate says so (and how to fix it) instead of hiding it behind its staged copy."""
    repo = copy_repository(repository, tmp_path / "repo", ("two_python",))
    (repo / ".tritongen-two_python-k1ll3d" / "two_python" / "1").mkdir(parents=True)
    report = validate_repository(repo)
    assert models_by_name(report)["two_python"].passed and report.passed is False
    (problem,) = report.repository_problems
    assert problem.startswith("'.tritongen-two_python-k1ll3d/' (the scratch folder of a build that was interrupted")
    assert f"rm -r {repo / '.tritongen-two_python-k1ll3d'}" in problem
    with pytest.raises(TritongenError, match="Poll failed for model directory '.tritongen-two_python-k1ll3d'"):
        with launch(repo, timeout_s=60):  # the raw repository, as a deployment serves it
            pass
    printed = cli("validate", repo)
    assert printed.exit_code == 1 and "✗ repository  '.tritongen-two_python-k1ll3d/'" in printed.stdout
    assert "a real tritonserver would not start on this repository" in printed.stdout


def test_requests_that_are_the_clients_fault_get_a_client_error(running: tuple[ServerHandle, Path],
                                                                tmp_path: Path) -> None:
    """The python format refuses bad values and absurd sizes as the client's fault: HTTP 400, gRPC INVALID_ARGUMENT."""
    from tritongen.runners.triton import TritonRequestError, TritonRunner

    handle, repo = running
    out_of_range = {"x": np.ones((1, 4), np.float32), "ids": np.full((1, 2), 99, np.int64)}  # a 10-row table
    for protocol, url, status in (("http", handle.http_url, "400"), ("grpc", handle.grpc_url, "INVALID_ARGUMENT")):
        with TritonRunner(url, "two_python", protocol=protocol) as runner, pytest.raises(TritonRequestError) as info:
            runner.infer(out_of_range)
        assert status in str(info.value.status) and info.value.client_fault, info.value.status
        assert "indices element out of data bounds" in info.value.server_message
    small = copy_repository(repo, tmp_path / "repo")
    config = small / "two_python" / "config.pbtxt"
    config.write_text(config.read_text() + 'parameters { key: "tritongen_max_request_bytes" value { string_value: '
                                           '"256" } }\n')
    with launch(small) as limited, TritonRunner(limited.http_url, "two_python") as runner:
        runner.infer({"x": np.ones((2, 4), np.float32), "ids": np.zeros((2, 2), np.int64)})  # 64 bytes: fine
        with pytest.raises(TritonRequestError) as info:
            runner.infer({"x": np.ones((32, 4), np.float32), "ids": np.zeros((32, 2), np.int64)})
        assert info.value.status == "400" and "more than this model accepts (256 bytes" in info.value.server_message
