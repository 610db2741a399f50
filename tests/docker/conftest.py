"""Fixtures for tests against a real Docker engine: the engine, the slim image, a built repository, no leftovers.

Where no engine (or no slim image) is found the tests skip with the reason, except when
TRITONGEN_REQUIRE_DOCKER=1 (CI sets it, after .ci/docker-setup.sh), where a skip would hide a broken set-up
and they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import models
from tests.conftest import save_checkpoint

REQUIRE_ENV = "TRITONGEN_REQUIRE_DOCKER"
SETUP_HINT = "run `bash .ci/docker-setup.sh` (installs Docker, starts dockerd, builds the slim image)"
# The debootstrap image that .ci/docker-setup.sh makes: no image can be pulled on these machines.
BASE_IMAGE = os.environ.get("TRITONGEN_BASE_IMAGE", "tritongen/debian-python:bookworm")


def skip_or_fail(reason: str) -> None:
    """Skip, or fail when CI asked for Docker tests to run."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1, so this is a failure, not a skip); {SETUP_HINT}", pytrace=False)
    pytest.skip(f"{reason}; {SETUP_HINT}")


@pytest.fixture(scope="session")
def docker_client():  # -> docker.DockerClient
    from tritongen.errors import TritongenError
    from tritongen.server.docker import docker_client as connect

    try:
        client = connect()
    except TritongenError as exc:
        skip_or_fail(f"no Docker engine: {exc.message}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def slim_image(docker_client) -> str:
    import docker

    from tritongen.deploy import SLIM_IMAGE

    try:
        docker_client.images.get(SLIM_IMAGE)
    except docker.errors.ImageNotFound:
        skip_or_fail(f"the slim Triton image {SLIM_IMAGE} is not built")
    return SLIM_IMAGE


@pytest.fixture(scope="session")
def base_image(docker_client) -> str:
    import docker

    try:
        docker_client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        skip_or_fail(f"the base image {BASE_IMAGE} is not on this machine")
    return BASE_IMAGE


def our_containers(client) -> dict[str, str]:
    """Containers (running or not) that carry tritongen's label: id -> name."""
    return {c.id: c.name for c in client.containers.list(all=True, filters={"label": "tritongen"})}


@pytest.fixture(autouse=True)
def no_leftover_containers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a tritongen container behind (and remove it, so the next test starts clean)."""
    if request.node.get_closest_marker("docker") is None:
        yield
        return
    client = request.getfixturevalue("docker_client")
    before = set(our_containers(client))
    yield
    left = {cid: name for cid, name in our_containers(client).items() if cid not in before}
    for cid in left:
        client.containers.get(cid).remove(force=True)
    assert not left, f"containers left behind: {sorted(left.values())}"


def compose_commands() -> list[tuple[str, ...]]:
    """Compose v1 (`docker-compose`, Debian's 1.29) and v2 (`docker compose`), those installed."""
    found: list[tuple[str, ...]] = []
    if shutil.which("docker-compose"):
        found.append(("docker-compose",))
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        found.append(("docker", "compose"))
    return found


@dataclass(frozen=True)
class BuiltRepository:
    repository: Path
    deploy: Path
    models: tuple[str, ...]


@pytest.fixture(scope="session")
def python_repository(tmp_path_factory: pytest.TempPathFactory) -> BuiltRepository:
    """Two models built with `--format python` (servable by the slim image) by tritongen's own build."""
    import torch

    from tritongen.build import BuildOptions, build_model

    root = tmp_path_factory.mktemp("project")
    repository = root / "model_repository"
    torch.manual_seed(0)
    cnn = save_checkpoint(models.SmallCNN(), root / "cnn.pt")
    two = save_checkpoint(models.TwoInTwoOut(), root / "two.pt")
    build_model(BuildOptions(checkpoint=cnn, name="cnn", model_class="tests.models:SmallCNN",
                             inputs=("image:3x32x32:fp32",), formats=("python",), repository=repository,
                             max_batch_size=8))
    build_model(BuildOptions(checkpoint=two, name="two", model_class="tests.models:TwoInTwoOut",
                             inputs=("x:4:fp32", "ids:2:int64:0-9"), formats=("python",), repository=repository,
                             max_batch_size=8))
    deploy = root / "deploy"
    assert (deploy / "docker-compose.yml").is_file(), "build did not write deploy/ next to the repository"
    return BuiltRepository(repository, deploy, ("cnn", "two"))
