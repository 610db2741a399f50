"""Triton's command line, built in one place: what each option adds, and the same line in the compose file and the
Kubernetes Deployment."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.deploy.test_compose import write_model
from tritongen.deploy import write_deploy
from tritongen.deploy.command import ControlOptions, exit_timeout_of, triton_args
from tritongen.kube import write_target


def test_default_line_serves_exactly_the_repository_with_latency_summaries():
    args = triton_args("/models")
    assert args[:3] == ["tritonserver", "--model-repository=/models", "--model-control-mode=none"]
    assert "--metrics-config=summary_latencies=true" in args and "--disable-auto-complete-config" in args
    assert not [a for a in args if a.startswith(("--cache-config", "--load-model", "--http-restricted"))]
    assert exit_timeout_of(args) == 30


def test_rollouts_restrict_the_repository_api_on_both_protocols_in_tritons_2_51_format():
    args = triton_args("/models", control=ControlOptions(rollouts=True, key="${K}"), cache=1024)
    assert "--model-control-mode=explicit" in args and "--load-model=*" in args
    assert "--http-restricted-api=model-repository:admin-key=${K}" in args
    assert "--grpc-restricted-protocol=model-repository:admin-key=${K}" in args
    assert "--cache-config=local,size=1024" in args


def compose_command(deploy: Path) -> list[str]:
    return yaml.safe_load((deploy / "docker-compose.yml").read_text())["services"]["triton"]["command"]


def kubernetes_args(folder: Path) -> list[str]:
    deployment = yaml.safe_load((folder / "deployment.yaml").read_text())
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "triton"]
    return container["args"]


def test_compose_and_kubernetes_run_the_same_command_line(tmp_path: Path):
    repository = tmp_path / "model_repository"
    model = write_model(repository, "a")
    for cache in (False, True):
        if cache:
            (model / "config.pbtxt").write_text((model / "config.pbtxt").read_text() + "response_cache { enable: true }\n")
        write_deploy(repository)
        result = write_target(repository, "kubernetes", tmp_path / "k8s")
        compose = compose_command(tmp_path / "deploy")
        kube = kubernetes_args(result.folder)
        # The same flags; only the cache size is a variable of .env in compose.
        assert [a.split("=")[0] for a in compose] == [a.split("=")[0] for a in kube]
        assert [a for a in compose if "TRITON_CACHE_SIZE" not in a] == [a for a in kube if "--cache-config" not in a]
        assert any(a.startswith("--cache-config=local,size=") for a in kube) == cache
    write_deploy(repository, rollouts=True)
    assert "--model-control-mode=explicit" in compose_command(tmp_path / "deploy")
    assert "--model-control-mode=none" in kubernetes_args(result.folder)  # rollouts are a compose feature here
