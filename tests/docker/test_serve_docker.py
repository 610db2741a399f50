"""`serve()` with the Docker launcher, against the real engine: flags (tune), readiness past a proxy, the base-image
probe, and a container that does not outlive a tritongen killed with SIGKILL."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.docker.conftest import BuiltRepository, our_containers
from tritongen.errors import TritongenError

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_tune_on_docker_reloads_the_model_with_each_trial(python_repository: BuiltRepository, slim_image: str,
                                                          tmp_path: Path, cli) -> None:
    """`tune --server docker`: the container runs with explicit model control (ServerFlags), so trials reload."""
    repository = tmp_path / "model_repository"
    shutil.copytree(python_repository.repository / "two", repository / "two")
    result = cli("tune", "two", "--repository", repository, "--server", "docker", "--max-trials", "3",
                 "--concurrency", "2", "--duration", "0.5", "--instances", "1,2", "--threads", "1", "--dry-run",
                 "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    report = result.json()
    assert slim_image in report["server"] and report["served_by"] == "python backend"
    searched = [t for t in report["trials"] if t["role"] in ("start", "search")]
    assert len(searched) >= 2 and all(t["error"] is None and t["throughput"] for t in searched), searched
    assert {t["config"]["instances"] for t in searched} == {1, 2}  # each loaded with its own config
    # --dry-run: a noisy "gain" on a busy machine must not make the test depend on validating a rewrite.
    assert report["config_path"] is None


def test_docker_readiness_ignores_an_http_proxy_in_the_environment(python_repository: BuiltRepository,
                                                                    slim_image: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from tritongen.server import launch, server_alive

    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with launch(python_repository.repository, "docker", timeout_s=90) as handle:
        assert server_alive(handle)


def test_the_base_image_probe_says_an_image_lacks_python3_and_leaves_no_container(docker_client) -> None:
    import io
    import tarfile

    from tritongen.image import probe_base_image

    tag = f"tritongen-test/no-python:{uuid.uuid4().hex[:8]}"
    empty = io.BytesIO()
    with tarfile.open(fileobj=empty, mode="w"):
        pass  # an image with no files at all: certainly no python3
    docker_client.api.import_image_from_data(empty.getvalue(), repository=tag.split(":")[0], tag=tag.split(":")[1])
    before = set(our_containers(docker_client)) | {c.id for c in docker_client.containers.list(all=True)}
    try:
        with pytest.raises(TritongenError) as caught:
            probe_base_image(docker_client, tag)
        assert caught.value.message == f"base image {tag} has no python3 on its PATH"
        assert "check the image name" not in (caught.value.hint or "")
        assert {c.id for c in docker_client.containers.list(all=True)} <= before
    finally:
        docker_client.images.remove(tag, force=True)


def test_a_container_does_not_outlive_a_killed_tritongen(python_repository: BuiltRepository, slim_image: str,
                                                         docker_client, tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(f"""
        import time
        from tritongen.server.docker import launch_docker
        with launch_docker({str(python_repository.repository)!r}):
            print("ready", flush=True)
            time.sleep(600)
    """))
    before = set(our_containers(docker_client))
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "ready"
        assert len(set(our_containers(docker_client)) - before) == 1
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=10)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and set(our_containers(docker_client)) - before:
            time.sleep(0.2)
        assert set(our_containers(docker_client)) - before == set(), "the container outlived its tritongen"
    finally:
        owner.kill()
        owner.wait()
