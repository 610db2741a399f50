"""The compose deployment folder: which image, GPU reservation, port binding, files written atomically; compose
validates it."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

# `docker-compose config` and `docker compose config` need the binaries only, not an engine.
from tests.conftest import CNN_ARGS
from tests.docker.conftest import compose_commands, skip_or_fail
from tests.repository.staging import read_only
from tritongen import deploy
from tritongen.deploy import (
    NVIDIA_IMAGE,
    SLIM_IMAGE,
    check_deploy_writable,
    choose_image,
    needs_of_repository,
    write_deploy,
)
from tritongen.errors import TritongenError


def write_model(repository: Path, name: str, *, backend: str | None = "python", platform: str | None = None,
                kind: str = "KIND_CPU") -> Path:
    """A model directory with just enough config.pbtxt for the deploy decisions (nothing is served here)."""
    model = repository / name
    (model / "1").mkdir(parents=True)
    selector = f'backend: "{backend}"' if backend else f'platform: "{platform}"'
    (model / "config.pbtxt").write_text(f"""
name: "{name}"
{selector}
max_batch_size: 8
input {{ name: "x" data_type: TYPE_FP32 dims: [ 4 ] }}
output {{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] }}
instance_group [ {{ count: 1 kind: {kind} }} ]
""")
    return model


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "My Project"  # a space and capitals: the compose project name must still be valid
    (root / "model_repository").mkdir(parents=True)
    return root


def test_python_models_get_the_slim_image_bound_to_localhost(project: Path) -> None:
    repository = project / "model_repository"
    write_model(repository, "a")
    write_model(repository, "b")
    written = write_deploy(repository)
    deploy_dir = project / "deploy"
    assert sorted(p.relative_to(deploy_dir).as_posix() for p in written) == sorted(deploy.DEPLOY_FILES)
    assert all(deploy_dir in p.parents for p in written)
    compose = (deploy_dir / "docker-compose.yml").read_text()
    assert f"image: \"${{TRITON_IMAGE:-{SLIM_IMAGE}}}\"" in compose
    assert '"../model_repository:/models:ro"' in compose
    assert '"${TRITON_BIND:-127.0.0.1}:${TRITON_HTTP_PORT:-8000}:8000"' in compose
    assert "--disable-auto-complete-config" in compose and "--model-control-mode=none" in compose
    assert "/v2/health/ready" in compose and "shm_size:" in compose and "restart: unless-stopped" in compose
    assert "\nversion:" not in compose  # Compose v2 warns about it; v1 >= 1.27 does not need it
    assert "devices:" not in compose
    env = (deploy_dir / ".env").read_text()
    assert "COMPOSE_PROJECT_NAME=tritongen-my-project\n" in env
    assert "TRITON_BIND=127.0.0.1\n" in env and f"TRITON_IMAGE={SLIM_IMAGE}\n" in env
    readme = (deploy_dir / "README.md").read_text()
    assert "tritongen image build" in readme and "no authentication" in readme
    assert not list(deploy_dir.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_compose_stops_gracefully_runs_an_init_rotates_logs_and_never_pulls_the_slim_image(project: Path) -> None:
    from tritongen.deploy.command import EXIT_TIMEOUT_S

    repository = project / "model_repository"
    write_model(repository, "a")
    write_deploy(repository)
    triton = yaml.safe_load((project / "deploy" / "docker-compose.yml").read_text())["services"]["triton"]
    assert triton["init"] is True
    assert int(triton["stop_grace_period"].rstrip("s")) > EXIT_TIMEOUT_S
    assert f"--exit-timeout-secs={EXIT_TIMEOUT_S}" in triton["command"]
    assert triton["logging"] == {"driver": "json-file", "options": {"max-size": "50m", "max-file": "5"}}
    assert triton["pull_policy"] == "never" and triton["user"] == "${TRITON_USER:-1000:1000}"
    assert triton["volumes"] == ["../model_repository:/models:ro"]


def test_rollouts_put_a_private_key_in_env_that_later_writes_keep(project: Path) -> None:
    repository = project / "model_repository"
    write_model(repository, "a")
    write_deploy(repository, rollouts=True)
    env_file = project / "deploy" / ".env"
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and line[0] != "#")
    key = env["TRITON_ADMIN_KEY"]
    assert len(key) >= 24 and stat.S_IMODE(env_file.stat().st_mode) == 0o600
    compose = (project / "deploy" / "docker-compose.yml").read_text()
    assert key not in compose and key not in (project / "deploy" / "README.md").read_text()
    command = yaml.safe_load(compose)["services"]["triton"]["command"]
    assert "--model-control-mode=explicit" in command
    write_deploy(repository)  # rollouts=None: as the folder was written
    assert f"TRITON_ADMIN_KEY={key}\n" in env_file.read_text()
    assert "--model-control-mode=explicit" in (project / "deploy" / "docker-compose.yml").read_text()
    write_deploy(repository, rollouts=False)
    assert "TRITON_ADMIN_KEY" not in env_file.read_text()
    assert "--model-control-mode=none" in (project / "deploy" / "docker-compose.yml").read_text()


def test_onnx_models_get_nvidias_image_and_the_readme_says_why(project: Path) -> None:
    repository = project / "model_repository"
    write_model(repository, "onnx_model", backend=None, platform="onnxruntime_onnx")
    write_model(repository, "py_model")
    write_deploy(repository)
    compose = (project / "deploy" / "docker-compose.yml").read_text()
    assert NVIDIA_IMAGE in compose and "ulimits:" in compose
    readme = (project / "deploy" / "README.md").read_text()
    assert "onnx_model' uses the onnxruntime backend" in readme
    assert "--format python" in readme  # how to get a slim-servable model instead
    assert "Dockerfile.nvidia" in readme and "py_model" in readme  # the python model's packages, in a derived image


def test_gpu_models_reserve_gpus_and_cannot_use_the_slim_image(project: Path) -> None:
    repository = project / "model_repository"
    write_model(repository, "gpu_model", kind="KIND_GPU")
    assert needs_of_repository(repository).gpu
    write_deploy(repository)
    compose = (project / "deploy" / "docker-compose.yml").read_text()
    assert "driver: nvidia" in compose and "capabilities: [gpu]" in compose
    assert NVIDIA_IMAGE in compose
    with pytest.raises(TritongenError, match="CPU-only") as caught:
        choose_image(needs_of_repository(repository), "slim")
    assert "--image nvidia" in (caught.value.hint or "")


def test_tensorrt_plans_need_a_gpu_whatever_their_instance_kind(project: Path) -> None:
    repository = project / "model_repository"
    write_model(repository, "plan", backend=None, platform="tensorrt_plan", kind="KIND_AUTO")
    needs = needs_of_repository(repository)
    assert needs.gpu and needs.backends == {"tensorrt"}


def test_image_can_be_chosen_explicitly(project: Path) -> None:
    repository = project / "model_repository"
    write_model(repository, "a")
    needs = needs_of_repository(repository)
    assert choose_image(needs, "nvidia").ref == NVIDIA_IMAGE
    assert choose_image(needs, "registry.example/triton:1").kind == "custom"
    write_deploy(repository, image="registry.example/triton:1")
    assert "registry.example/triton:1" in (project / "deploy" / "docker-compose.yml").read_text()
    with pytest.raises(TritongenError, match="onnxruntime backend"):
        write_model(repository, "o", backend=None, platform="onnxruntime_onnx")
        write_deploy(repository, image="slim")


def test_public_binds_all_interfaces_and_warns(project: Path) -> None:
    repository = project / "model_repository"
    write_model(repository, "a")
    write_deploy(repository, public=True, http_port=9000)
    deploy_dir = project / "deploy"
    assert '"${TRITON_BIND:-0.0.0.0}:${TRITON_HTTP_PORT:-9000}:8000"' in (deploy_dir / "docker-compose.yml").read_text()
    assert "TRITON_BIND=0.0.0.0" in (deploy_dir / ".env").read_text()
    assert "anyone who can reach this machine" in (deploy_dir / "README.md").read_text()


def test_refresh_replaces_the_files(project: Path) -> None:
    repository = project / "model_repository"
    write_model(repository, "a")
    write_deploy(repository)
    compose = project / "deploy" / "docker-compose.yml"
    compose.write_text("edited by hand")
    write_deploy(repository)
    assert "services:" in compose.read_text()
    assert oct(compose.stat().st_mode & 0o777) == "0o644"


def test_custom_deploy_dir_and_dollar_in_paths(tmp_path: Path) -> None:
    repository = tmp_path / "price$list" / "model_repository"
    write_model(repository, "a")
    out = tmp_path / "elsewhere" / "deploy"
    write_deploy(repository, out)
    # `$` would start a Compose variable: it is doubled in literal values.
    assert '"../../price$$list/model_repository:/models:ro"' in (out / "docker-compose.yml").read_text()


def test_dockerfile_takes_its_base_image_as_an_argument(project: Path) -> None:
    write_model(project / "model_repository", "a")
    write_deploy(project / "model_repository")
    dockerfile = (project / "deploy" / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim\n" in dockerfile
    assert "FROM ${BASE_IMAGE}" in dockerfile
    assert "--no-index" in dockerfile  # wheels come from the build context, never from PyPI during the build
    server = (project / "deploy" / "requirements-server.txt").read_text()
    assert "nvidia-pytriton==0.7.0" in server
    assert "onnxruntime" in (project / "deploy" / "requirements.txt").read_text()


def test_repository_problems_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(TritongenError, match="does not exist"):
        write_deploy(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TritongenError, match="holds no model"):
        write_deploy(tmp_path / "empty")
    broken = tmp_path / "broken"
    (broken / "m").mkdir(parents=True)
    (broken / "m" / "config.pbtxt").write_text('name: "m"\nmax_batch_sise: 3\n')
    with pytest.raises(TritongenError, match="not a valid Triton model config") as caught:
        write_deploy(broken)
    assert str(broken / "m" / "config.pbtxt") in caught.value.message


def test_a_read_only_deploy_folder_is_one_line_before_anything_is_written(project: Path) -> None:
    repository = project / "model_repository"
    write_model(repository, "a")
    with read_only(project / "deploy"):
        with pytest.raises(TritongenError) as caught:
            check_deploy_writable(repository)
        assert "deploy" in caught.value.message and "read-only" in caught.value.message
        assert "--no-deploy" in (caught.value.hint or "")
        with pytest.raises(TritongenError, match="read-only"):  # write_deploy says the same, without a traceback
            write_deploy(repository)


def test_build_checks_the_deploy_folder_before_it_installs_a_version(tmp_path: Path, cli, cnn_checkpoint) -> None:
    repository = tmp_path / "model_repository"
    with read_only(tmp_path / "deploy"):
        result = cli("build", cnn_checkpoint, *CNN_ARGS[:-1], "--repository", repository)
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot write the deployment folder" in errors[0]
    assert not repository.exists()  # found before any work, so no version was installed


VARIANTS = {
    "slim": {"kind": "KIND_CPU", "public": False},
    "gpu": {"kind": "KIND_GPU", "public": False},
    "public": {"kind": "KIND_CPU", "public": True},
    "rollouts": {"kind": "KIND_CPU", "public": False, "rollouts": True},
}


@pytest.mark.docker
@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("compose", ["v1", "v2"])
def test_compose_config_accepts_the_file(compose: str, variant: str, project: Path) -> None:
    """`docker-compose config` (v1) and `docker compose config` (v2) parse and validate the generated file."""
    commands = {("docker-compose",): "v1", ("docker", "compose"): "v2"}
    found = [cmd for cmd in compose_commands() if commands[cmd] == compose]
    if not found:
        if compose == "v1":
            skip_or_fail("docker-compose (Compose v1) is not installed")
        pytest.skip("Compose v2 (`docker compose`) is not installed; .ci/docker-setup.sh installs it")
    repository = project / "model_repository"
    write_model(repository, "a", kind=VARIANTS[variant]["kind"])
    write_deploy(repository, public=VARIANTS[variant]["public"], rollouts=VARIANTS[variant].get("rollouts", False))
    cmd = [*found[0], "config"] + (["--format", "json"] if compose == "v2" else [])
    result = subprocess.run(cmd, cwd=project / "deploy", capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    bind = "0.0.0.0" if VARIANTS[variant]["public"] else "127.0.0.1"
    if compose == "v1":
        assert f"- {bind}:8000:8000/tcp" in result.stdout
        assert f"{project / 'model_repository'}:/models:ro" in result.stdout
        assert ("capabilities:" in result.stdout) == (variant == "gpu")
        return
    config = json.loads(result.stdout)
    assert config["name"] == "tritongen-my-project"
    service = config["services"]["triton"]
    assert {(p["host_ip"], p["target"]) for p in service["ports"]} == {(bind, 8000), (bind, 8001), (bind, 8002)}
    (volume,) = service["volumes"]
    assert volume["read_only"] and volume["target"] == "/models"
    assert volume["source"] == str(project / "model_repository")
    assert service["healthcheck"]["test"][:2] == ["CMD", "python3"]
    assert service["init"] is True and service["stop_grace_period"] == "40s"
    env_key = (project / "deploy" / ".env").read_text().split("TRITON_ADMIN_KEY=")[-1].split()[0]
    restricted = [a for a in service["command"] if a.startswith("--http-restricted-api=")]
    # The key comes from .env into the command line, where Triton reads it.
    assert restricted == ([f"--http-restricted-api=model-repository:admin-key={env_key}"] if variant == "rollouts" else [])
    devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    assert bool(devices) == (variant == "gpu")


@pytest.mark.docker
def test_ort_tensorrt_engine_cache_is_mounted_writable(project: Path) -> None:
    """The repository is mounted read-only; the engine cache inside it gets its own writable mount."""
    from tritongen.accelerators import execution_accelerators, parse_ort_accelerators
    from tritongen.config import ModelConfig, render_config
    from tritongen.spec import ModelSpec, parse_input_spec

    spec = ModelSpec(inputs=(parse_input_spec("x:4:fp32"),), outputs=(parse_input_spec("y:4:fp32"),), max_batch_size=8)
    requests = parse_ort_accelerators(("tensorrt:fp16",), kind="gpu", precision="fp32", quantize=None, formats=("onnx",))
    config = ModelConfig("det", spec, kind="gpu", accelerators=execution_accelerators(requests, "det"))
    repository = project / "model_repository"
    (repository / "det" / "1").mkdir(parents=True)
    (repository / "det" / "config.pbtxt").write_text(render_config(config))
    write_deploy(repository)
    compose = (project / "deploy" / "docker-compose.yml").read_text()
    assert '"../model_repository/det/trt_cache:/models/det/trt_cache"' in compose
    result = subprocess.run(["docker-compose", "config"], cwd=project / "deploy", capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"{repository / 'det' / 'trt_cache'}:/models/det/trt_cache:rw" in result.stdout
