"""The builders: whether one can run here, the reproduce script, and the container builder on the real Docker engine.

TensorRT itself cannot exist here: the container tests run a stand-in builder script (a few lines of Python in a
local Debian image) through the real Docker engine, to show that tritongen reads the script's results and errors
and never leaves a container behind, however the build ends.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tritongen.errors import TritongenError
from tritongen.formats.tensorrt import trt_builder
from tritongen.formats.tensorrt.builder import (
    BUILDER_SCRIPT,
    NEEDS,
    TensorRTOptions,
    build_in_container,
    check_tensorrt_available,
    container_command,
    container_error,
    reproduce_script,
    run_builder_container,
    tensorrt_unavailable_reason,
)
from tritongen.formats.tensorrt.container import gpu_requests

ENGINE = {"tensorrt_version": "10.3.0.26", "compute_capability": "9.0", "cuda_runtime": "12.6",
          "tensors": [{"name": "x", "mode": "input", "dtype": "FLOAT", "shape": [-1, 4],
                       "profile": {"min": [1, 4], "opt": [8, 4], "max": [8, 4]}},
                      {"name": "y", "mode": "output", "dtype": "FLOAT", "shape": [-1, 4]}]}


def test_without_tensorrt_the_error_says_what_is_needed() -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    reason = tensorrt_unavailable_reason(TensorRTOptions())
    assert reason == "the tensorrt Python package is not installed and no --trt-image was given"
    with pytest.raises(TritongenError) as err:
        check_tensorrt_available(TensorRTOptions())
    assert err.value.message.startswith(NEEDS) and "--trt-image" in err.value.message
    assert "--format onnx" in err.value.hint


def test_trt_image_without_a_docker_engine_says_so(monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    reason = tensorrt_unavailable_reason(TensorRTOptions(image="nvcr.io/nvidia/tensorrt:24.08-py3"))
    assert reason and reason.startswith("--trt-image was given but no Docker engine answers at "
                                        "unix:///nonexistent/docker.sock")


def test_cli_format_tensorrt_fails_in_one_line_before_exporting(tmp_path: Path, cnn_checkpoint: Path, cli) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    result = cli("build", cnn_checkpoint, "--model-class", "tests.models:SmallCNN", "--input", "image:3x32x32:fp32",
                 "--format", "tensorrt", "--repository", tmp_path / "repo", "--no-deploy")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs TensorRT and an NVIDIA GPU" in lines[0] and "--trt-image" in lines[0]
    assert "Traceback" not in result.stderr and "exporting" not in result.stderr


def test_container_command_mounts_the_job_and_asks_for_gpus(tmp_path: Path) -> None:
    options = TensorRTOptions(image="nvcr.io/nvidia/tensorrt:24.08-py3")
    command = container_command(options, tmp_path, "job.json", user="1000:1000")
    assert command == ["docker", "run", "--rm", "--gpus", "all", "--user", "1000:1000", "--env", "HOME=/tmp",
                       "--volume", f"{tmp_path.resolve()}:/tritongen-trt", "--workdir", "/tritongen-trt",
                       "nvcr.io/nvidia/tensorrt:24.08-py3", "python3", "trt_builder.py", "job.json"]
    script = reproduce_script(options)
    assert '--volume "$(pwd)":/tritongen-trt' in script and "--user" not in script
    assert script.startswith("#!/bin/sh") and "nvcr.io/nvidia/tensorrt:24.08-py3 python3 trt_builder.py job.json" in script
    assert "python3 trt_builder.py job.json" in reproduce_script(TensorRTOptions())


def test_gpu_requests_follow_docker_run_gpus() -> None:
    assert gpu_requests("none") is None
    assert gpu_requests("all")[0]["Count"] == -1 and gpu_requests("2")[0]["Count"] == 2
    assert gpu_requests("device=0,3")[0]["DeviceIDs"] == ["0", "3"]
    with pytest.raises(TritongenError, match="unknown GPU request"):
        gpu_requests("many")


def test_container_build_mock_docker_reads_the_metadata_and_maps_errors(tmp_path: Path) -> None:
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"metadata": "engine.json"}))
    seen = []

    def fake_run(options, workdir, job_name):
        seen.append((options.image, workdir, job_name))
        (tmp_path / "engine.json").write_text(json.dumps(ENGINE))
        return 0, ""

    options = TensorRTOptions(image="img:1")
    result = build_in_container(options, job, run=fake_run)
    assert result.tensorrt_version == "10.3.0.26" and [t.name for t in result.inputs] == ["x"]
    assert seen == [("img:1", tmp_path, "job.json")]
    gpu = container_error("img:1", 125, "docker: Error response from daemon: could not select device driver \"\" "
                                        "with capabilities: [[gpu]].")
    assert "could not give img:1 a GPU" in gpu.message and "NVIDIA Container Toolkit" in gpu.hint
    ours = container_error("img:1", 3, "banner\n" + trt_builder.ERROR_PREFIX + "no CUDA GPU is visible\n")
    assert ours.message == "TensorRT build in img:1 failed: no CUDA GPU is visible"
    missing = container_error("img:1", 125, "Unable to find image 'img:1' locally")
    assert "cannot find or pull" in missing.message


# ---------------------------------------------------------------------------------------------------------------
# The container builder on the real Docker engine, with a stand-in for the TensorRT builder script


@pytest.fixture(scope="module")
def docker_engine():
    from tests.docker.conftest import skip_or_fail
    from tritongen.server.docker import docker_client

    try:
        client = docker_client()
    except TritongenError as exc:
        skip_or_fail(f"no Docker engine: {exc.message}")
    yield client
    client.close()


@pytest.fixture
def base_image(docker_engine) -> str:
    import docker

    from tests.docker.conftest import BASE_IMAGE, skip_or_fail

    try:
        docker_engine.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        skip_or_fail(f"the base image {BASE_IMAGE} is not built")
    return BASE_IMAGE


def build_containers(client) -> set[str]:
    return {c.id for c in client.containers.list(all=True, filters={"label": "tritongen.purpose=TensorRT build"})}


def job_with_stand_in(work: Path, script: str) -> Path:
    """A job directory whose builder script is `script` (TensorRT cannot exist here)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / BUILDER_SCRIPT.name).write_text(script)
    (work / "job.json").write_text(json.dumps({"metadata": "engine.json"}))
    os.chmod(work, 0o777)
    return work / "job.json"


@pytest.mark.docker
def test_container_build_mock_tensorrt_past_its_timeout_leaves_no_container(tmp_path: Path, docker_engine,
                                                                            base_image: str) -> None:
    job = job_with_stand_in(tmp_path / "job", "import time\ntime.sleep(120)\n")
    before = build_containers(docker_engine)
    options = TensorRTOptions(image=base_image, gpus="none", timeout_s=3)
    started = time.monotonic()
    with pytest.raises(TritongenError) as err:
        build_in_container(options, job)
    assert "took more than 3s" in err.value.message and "removed" in err.value.message
    assert time.monotonic() - started < 60
    assert build_containers(docker_engine) == before


@pytest.mark.docker
def test_container_build_mock_tensorrt_interrupted_leaves_no_container(tmp_path: Path, docker_engine,
                                                                       base_image: str) -> None:
    job = job_with_stand_in(tmp_path / "job", "import time\ntime.sleep(120)\n")
    before = build_containers(docker_engine)
    options = TensorRTOptions(image=base_image, gpus="none", timeout_s=600)
    seen_running = []

    def interrupt() -> None:  # Ctrl-C once the container runs
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not seen_running:
            seen_running.extend(build_containers(docker_engine) - before)
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    timer = threading.Thread(target=interrupt)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            build_in_container(options, job)
    finally:
        timer.join()
    assert seen_running and build_containers(docker_engine) == before


@pytest.mark.docker
def test_container_build_mock_tensorrt_reads_results_and_the_scripts_error_line(tmp_path: Path, docker_engine,
                                                                                base_image: str) -> None:
    before = build_containers(docker_engine)
    ok = job_with_stand_in(tmp_path / "ok", f"import json\nopen('engine.json', 'w').write({json.dumps(ENGINE)!r})\n")
    meta = build_in_container(TensorRTOptions(image=base_image, gpus="none", timeout_s=120), ok)
    assert meta.tensorrt_version == "10.3.0.26" and [t.name for t in meta.outputs] == ["y"]
    failing = job_with_stand_in(tmp_path / "bad", "import sys\nprint('TensorRT banner')\n"
                                f"print({trt_builder.ERROR_PREFIX + 'no CUDA GPU is visible'!r}, file=sys.stderr)\n"
                                f"sys.exit({trt_builder.EXIT_ERROR})\n")
    with pytest.raises(TritongenError) as err:
        build_in_container(TensorRTOptions(image=base_image, gpus="none", timeout_s=120), failing)
    assert err.value.message == f"TensorRT build in {base_image} failed: no CUDA GPU is visible"
    code, log = run_builder_container(TensorRTOptions(image=base_image, gpus="none", timeout_s=120), tmp_path / "bad",
                                      "job.json")
    assert code == trt_builder.EXIT_ERROR and "TensorRT banner" in log
    assert build_containers(docker_engine) == before


@pytest.mark.docker
def test_a_missing_trt_image_is_named_before_any_container(tmp_path: Path, docker_engine) -> None:
    job = job_with_stand_in(tmp_path / "job", "")
    before = build_containers(docker_engine)
    with pytest.raises(TritongenError) as err:
        build_in_container(TensorRTOptions(image="tritongen-test/no-such-image:0", gpus="none"), job)
    assert "is not on this machine" in err.value.message and "docker pull" in err.value.hint
    assert build_containers(docker_engine) == before
