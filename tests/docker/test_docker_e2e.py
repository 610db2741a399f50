"""End to end against a real Docker engine: the generated deploy folder under Compose, and `validate --server docker`.

Needs the slim image (`tritongen image build`, done by .ci/docker-setup.sh). Every test is checked by the
`no_leftover_containers` fixture: no container with tritongen's label may survive it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from tests.docker.conftest import BuiltRepository, compose_commands
from tritongen.errors import TritongenError
from tritongen.repository import load_reference, versions_of

pytestmark = [pytest.mark.docker, pytest.mark.slow]

ATOL, RTOL = 1e-4, 1e-3
COMPOSE = compose_commands()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def latest_version_dir(repository: Path, model: str) -> Path:
    return repository / model / str(versions_of(repository / model)[-1])


def check_inference(http_url: str, grpc_url: str, repository: Path, model: str) -> None:
    """Send the reference inputs over HTTP and gRPC and compare with the PyTorch outputs build saved."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    inputs, expected = load_reference(latest_version_dir(repository, model))
    for module, url in ((httpclient, http_url), (grpcclient, grpc_url)):
        client = module.InferenceServerClient(url)
        try:
            feeds = []
            for name, array in inputs.items():
                feed = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
                feed.set_data_from_numpy(array)
                feeds.append(feed)
            result = client.infer(model, feeds)
            for name, want in expected.items():
                got = result.as_numpy(name)
                assert got is not None, f"{model}: no output {name} over {module.__name__}"
                np.testing.assert_allclose(got, want, atol=ATOL, rtol=RTOL,
                                           err_msg=f"{model}.{name} ({module.__name__})")
        finally:
            client.close()


def wait_ready(http_url: str, timeout_s: float = 90.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{http_url}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"Triton at {http_url} not ready after {timeout_s:.0f} s")


def wait_healthy(container, timeout_s: float = 60.0) -> None:
    """Docker's own health status, from the compose file's healthcheck (its first run is after `interval`)."""
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        container.reload()
        status = container.attrs["State"].get("Health", {}).get("Status")
        if status == "healthy":
            return
        time.sleep(1)
    raise AssertionError(f"container health is {status!r} after {timeout_s:.0f} s")


@pytest.mark.parametrize("compose", COMPOSE or [pytest.param(None, marks=pytest.mark.skip(reason="no Compose"))],
                         ids=lambda c: {("docker-compose",): "v1", ("docker", "compose"): "v2"}.get(c, "none"))
def test_compose_up_serves_the_repository(compose: tuple[str, ...], python_repository: BuiltRepository,
                                          slim_image: str, docker_client) -> None:
    """`compose up -d` on the generated folder, as the README says, then inference over HTTP and gRPC, then down."""
    project = f"tritongen-test-{uuid.uuid4().hex[:8]}"
    ports = {"TRITON_HTTP_PORT": free_port(), "TRITON_GRPC_PORT": free_port(), "TRITON_METRICS_PORT": free_port()}
    # Shell variables override .env: ports that are free, and a project name that touches no real deployment.
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, **{k: str(v) for k, v in ports.items()}}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*compose, *args], cwd=python_repository.deploy, env=env, capture_output=True,
                              text=True, timeout=180)

    try:
        # Compose v2 can wait for the healthcheck itself; v1 (Debian's 1.29) cannot, so the test polls below.
        up = run("up", "-d", "--wait") if compose == ("docker", "compose") else run("up", "-d")
        assert up.returncode == 0, up.stderr
        containers = docker_client.containers.list(filters={"label": f"com.docker.compose.project={project}"})
        assert len(containers) == 1, containers
        container = containers[0]
        http_url = f"127.0.0.1:{ports['TRITON_HTTP_PORT']}"
        wait_ready(http_url)
        for model in python_repository.models:
            check_inference(http_url, f"127.0.0.1:{ports['TRITON_GRPC_PORT']}", python_repository.repository, model)

        # What the compose file promised, read back from the running container.
        host_config = container.attrs["HostConfig"]
        assert container.image.tags and slim_image in container.image.tags
        assert all(b["HostIp"] == "127.0.0.1" for bs in host_config["PortBindings"].values() for b in bs)
        assert host_config["ShmSize"] == 1 << 30
        assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
        mounts = container.attrs["Mounts"]
        assert [(m["Destination"], m["RW"]) for m in mounts] == [("/models", False)]
        assert "--disable-auto-complete-config" in container.attrs["Args"]
        assert "--model-control-mode=none" in container.attrs["Args"]
        assert container.labels.get("tritongen") == "1"
        wait_healthy(container)  # the healthcheck command works inside the image
    finally:
        logs = run("logs", "--no-color")
        down = run("down", "--timeout", "5")
    assert down.returncode == 0, down.stderr + logs.stdout[-3000:]


def test_validate_with_docker_server(python_repository: BuiltRepository, slim_image: str, cli) -> None:
    """`tritongen validate --server docker` runs every check against the slim image and passes."""
    result = cli("validate", python_repository.repository, "--server", "docker", "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = result.json()
    assert report["passed"], report
    assert {m["name"] for m in report["models"]} == set(python_repository.models)
    assert slim_image in report["server"]


def test_launch_docker_serves_and_removes_its_container(python_repository: BuiltRepository, slim_image: str,
                                                        docker_client) -> None:
    from tritongen.server.docker import launch_docker

    with launch_docker(python_repository.repository) as handle:
        assert handle.kind == "docker"
        assert handle.http_url.startswith("127.0.0.1:")
        for model in python_repository.models:
            check_inference(handle.http_url, handle.grpc_url, python_repository.repository, model)
        (container,) = docker_client.containers.list(filters={"label": "tritongen.purpose=serve"})
        mounts = container.attrs["Mounts"]
        assert [(m["Destination"], m["RW"]) for m in mounts] == [("/models", False)]
        assert container.attrs["HostConfig"]["ShmSize"] == 1 << 30
        assert "READY" in handle.log()
    assert not docker_client.containers.list(all=True, filters={"id": container.id})
    assert "READY" in handle.log()  # the log outlives the container, for reports written afterwards


def test_launch_docker_removes_the_container_on_ctrl_c(python_repository: BuiltRepository, slim_image: str,
                                                       docker_client) -> None:
    from tritongen.server.docker import launch_docker

    with pytest.raises(KeyboardInterrupt), launch_docker(python_repository.repository):
        raise KeyboardInterrupt
    # The autouse fixture checks that no labelled container is left.


@pytest.mark.parametrize("after_s", [(0.01, 0.02, 0.03, 0.05), (0.5,)], ids=["while-creating", "while-loading"])
def test_launch_docker_removes_the_container_on_ctrl_c_while_starting(after_s: tuple[float, ...],
                                                                     python_repository: BuiltRepository,
                                                                     slim_image: str, docker_client) -> None:
    import signal

    from tests.docker.conftest import our_containers
    from tritongen.server.docker import launch_docker

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    before = set(our_containers(docker_client))
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        # Up to 0.05 s the engine is still creating the container (the create call cut short by Ctrl-C goes on in the
        # engine: its container can appear after the call returned); at 0.5 s the server is loading models.
        for delay in after_s:
            signal.setitimer(signal.ITIMER_REAL, delay)
            with pytest.raises(KeyboardInterrupt), launch_docker(python_repository.repository):
                pytest.fail("the server became ready before the interrupt; the test did not test the start")
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    time.sleep(1.5)  # a container created late shows up by now (CI once left one that the check had not yet seen)
    assert set(our_containers(docker_client)) == before


def test_launch_docker_puts_the_log_in_the_error_when_a_model_fails(tmp_path: Path,
                                                                   python_repository: BuiltRepository,
                                                                   slim_image: str) -> None:
    import shutil

    from tritongen.server.docker import launch_docker

    repository = tmp_path / "model_repository"
    shutil.copytree(python_repository.repository / "two", repository / "two")
    model_py = latest_version_dir(repository, "two") / "model.py"
    model_py.write_text("raise RuntimeError('this model is broken on purpose')\n")
    with pytest.raises(TritongenError) as caught:
        with launch_docker(repository, timeout_s=60):
            pass
    assert "two" in caught.value.message
    assert "broken on purpose" in (caught.value.details or "")


def test_launch_docker_follows_symlinks_out_of_the_repository(tmp_path: Path, python_repository: BuiltRepository,
                                                              slim_image: str) -> None:
    """A staged repository of symlinks (as validate makes for ONNX models) still loads inside the container."""
    from tritongen.server.docker import launch_docker

    repository = tmp_path / "staged"
    (repository / "cnn").mkdir(parents=True)
    for entry in (python_repository.repository / "cnn").iterdir():
        (repository / "cnn" / entry.name).symlink_to(entry)
    with launch_docker(repository) as handle:
        check_inference(handle.http_url, handle.grpc_url, python_repository.repository, "cnn")


def test_launch_docker_missing_image_says_how_to_get_it(python_repository: BuiltRepository, docker_client) -> None:
    from tritongen.server.docker import launch_docker

    with pytest.raises(TritongenError) as caught:
        with launch_docker(python_repository.repository, image="tritongen/no-such-image:0"):
            pass
    assert "not on this machine" in caught.value.message
    assert "docker pull" in (caught.value.hint or "")


def test_image_build_from_a_deploy_folder(python_repository: BuiltRepository, base_image: str, cli,
                                          docker_client) -> None:
    """`tritongen image build --deploy DIR` builds the generated Dockerfile (fast: wheels and layers are cached)."""
    tag = f"tritongen/tritonserver-slim:test-{uuid.uuid4().hex[:6]}"
    try:
        result = cli("image", "build", "--deploy", python_repository.deploy, "--base-image", base_image,
                     "--tag", tag, "--quiet", "--json")
        assert result.exit_code == 0, result.stdout + result.stderr
        built = result.json()
        assert built["tag"] == tag and built["python_version"] == "3.11"
        assert 100e6 < built["size_bytes"] < 1.5e9
        assert any(w.startswith("nvidia_pytriton-") for w in built["wheels"])
        docker_client.images.get(tag)
    finally:
        import docker

        try:
            docker_client.images.remove(tag)
        except docker.errors.ImageNotFound:
            pass


def test_launch_docker_gpu_request_without_gpus_is_a_clear_error(python_repository: BuiltRepository, slim_image: str,
                                                                 docker_client) -> None:
    from tritongen.server.docker import launch_docker

    if "nvidia" in (docker_client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime: a GPU request may succeed here")
    with pytest.raises(TritongenError, match="cannot start a container") as caught:
        with launch_docker(python_repository.repository, gpus=True):
            pass
    assert "NVIDIA Container Toolkit" in (caught.value.hint or "")
