"""The images' requirements: tritongen's own pins and the models' `python_requirements`, merged into one pin per
package; the Dockerfile derived from NVIDIA's image for python-backend models, referenced from compose."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.test_compose import write_model
from tests.deploy.test_needs import with_requirements
from tests.docker.conftest import compose_commands, skip_or_fail
from tritongen.deploy import NVIDIA_IMAGE, needs_of_repository, write_deploy
from tritongen.deploy.slim import NVIDIA_DOCKERFILE, NVIDIA_REQUIREMENTS, model_requirements, slim_requirements
from tritongen.errors import TritongenError


def requirement_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_models_requirements_merge_with_tritongens_pins(tmp_path: Path):
    repository = tmp_path / "model_repository"
    with_requirements(repository, "pre", {1: ["tokenizers==0.22.1", "numpy<2"]})
    with_requirements(repository, "post", {1: ["Pillow==11.0.0", "tokenizers>=0.20"]})
    _, base = slim_requirements()
    merged = model_requirements(needs_of_repository(repository), base)
    numpy = next(r for r in base if r.startswith("numpy"))
    assert merged[:2] == base and numpy.startswith("numpy==")  # numpy==1.26.x satisfies numpy<2: the pin stays
    assert "tokenizers==0.22.1" in merged and "Pillow==11.0.0" in merged
    assert len(merged) == 4
    write_deploy(repository)
    requirements = requirement_lines(tmp_path / "deploy" / "requirements.txt")
    assert "tokenizers==0.22.1" in requirements and "Pillow==11.0.0" in requirements


def test_two_models_pinning_different_versions_is_one_clear_error(tmp_path: Path):
    repository = tmp_path / "model_repository"
    with_requirements(repository, "a", {1: ["tokenizers==0.20.0"]})
    with_requirements(repository, "b", {1: ["tokenizers==0.22.1"]})
    with pytest.raises(TritongenError, match="one image cannot hold both") as caught:
        write_deploy(repository)
    assert "model 'a' needs tokenizers==0.20.0" in caught.value.message
    with_requirements(tmp_path / "bad", "c", {1: ["not a requirement!"]})
    with pytest.raises(TritongenError, match="pip cannot read"):
        write_deploy(tmp_path / "bad")


def test_nvidia_image_with_python_models_gets_a_derived_dockerfile_built_by_compose(tmp_path: Path):
    repository = tmp_path / "model_repository"
    write_model(repository, "onnx_model", backend=None, platform="onnxruntime_onnx")  # needs NVIDIA's image
    with_requirements(repository, "pre", {1: ["tokenizers==0.22.1"]})
    write_deploy(repository)
    deploy = tmp_path / "deploy"
    dockerfile = (deploy / NVIDIA_DOCKERFILE).read_text()
    assert f"ARG TRITON_BASE_IMAGE={NVIDIA_IMAGE}" in dockerfile and "FROM ${TRITON_BASE_IMAGE}" in dockerfile
    assert f"-r /tmp/tritongen/{NVIDIA_REQUIREMENTS}" in dockerfile
    pins = requirement_lines(deploy / NVIDIA_REQUIREMENTS)
    assert "tokenizers==0.22.1" in pins and any(p.startswith("onnxruntime==") for p in pins)
    assert all("==" in p for p in pins)  # pinned: numpy too, at the version installed here
    service = yaml.safe_load((deploy / "docker-compose.yml").read_text())["services"]["triton"]
    assert service["build"]["dockerfile"] == NVIDIA_DOCKERFILE and service["pull_policy"] == "build"
    assert service["build"]["args"]["TRITON_BASE_IMAGE"] == f"${{TRITON_BASE_IMAGE:-{NVIDIA_IMAGE}}}"
    assert "tritongen/" in service["image"]  # a local name: never pulled
    readme = (deploy / "README.md").read_text()
    assert NVIDIA_DOCKERFILE in readme


def test_gpu_models_get_onnxruntime_gpu_and_the_slim_image_none_of_this(tmp_path: Path):
    repository = tmp_path / "model_repository"
    write_model(repository, "gpu_model", kind="KIND_GPU")
    write_deploy(repository)
    pins = requirement_lines(tmp_path / "deploy" / NVIDIA_REQUIREMENTS)
    assert any(p.startswith("onnxruntime-gpu==") for p in pins)
    slim = tmp_path / "slim" / "model_repository"
    write_model(slim, "a")
    write_deploy(slim)
    assert not (tmp_path / "slim" / "deploy" / NVIDIA_DOCKERFILE).exists()


@pytest.mark.docker
def test_compose_resolves_the_derived_image_build(tmp_path: Path):
    """Not built here: NVIDIA's image cannot be pulled on this machine, so the build itself is not verified."""
    found = [cmd for cmd in compose_commands() if cmd == ("docker", "compose")]
    if not found:
        skip_or_fail("Compose v2 (`docker compose`) is not installed")
    repository = tmp_path / "model_repository"
    write_model(repository, "gpu_model", kind="KIND_GPU")
    write_deploy(repository)
    result = subprocess.run([*found[0], "config", "--format", "json"], cwd=tmp_path / "deploy", capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    import json

    service = json.loads(result.stdout)["services"]["triton"]
    assert service["build"]["dockerfile"] == NVIDIA_DOCKERFILE
    assert Path(service["build"]["context"]) == tmp_path / "deploy"
    assert service["build"]["args"]["TRITON_BASE_IMAGE"] == NVIDIA_IMAGE
