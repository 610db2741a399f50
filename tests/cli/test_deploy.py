"""`tritongen deploy` on the command line: each target, --json, and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.kube.repositories import write_repositories


@pytest.fixture(scope="module")
def repositories(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_repositories(tmp_path_factory.mktemp("cli-deploy"))


def test_kubernetes_target_writes_a_kustomize_base_beside_the_repository(cli, repositories, tmp_path):
    import shutil

    repository = shutil.copytree(repositories["pipeline"], tmp_path / "model_repository")
    result = cli("deploy", repository, "--target", "kubernetes", "--models-from", "s3://bucket/repo",
                 "--credentials-secret", "s3-creds")
    assert result.exit_code == 0, result.stderr
    folder = tmp_path / "deploy" / "kubernetes"
    assert f"wrote the kubernetes deployment: {folder}" in result.stdout
    assert "S3 s3://bucket/repo, credentials from Secret 's3-creds'" in result.stdout
    assert "defaults: `tritongen plan` sizes them" in result.stdout
    assert (folder / "kustomization.yaml").is_file() and (folder / "components" / "keda" / "scaledobject.yaml").is_file()


def test_json_and_every_target(cli, repositories, tmp_path):
    for target, expected in (("compose", "docker-compose.yml"), ("kubernetes", "deployment.yaml"),
                             ("kserve", "inferenceservice.yaml")):
        result = cli("deploy", repositories["cpu"], "--target", target, "--output", tmp_path / target, "--json")
        assert result.exit_code == 0, result.stderr
        payload = result.json()
        assert payload["ok"] and payload["target"] == target and payload["folder"] == str(tmp_path / target)
        assert str(tmp_path / target / expected) in payload["files"]


@pytest.mark.parametrize(("args", "message"), [
    (["--target", "kubernetes", "--models-from", "ftp://x"], "is not a model repository location"),
    (["--target", "compose", "--namespace", "ml"], "--namespace only apply to --target kubernetes or kserve"),
    (["--target", "kserve", "--public"], "--public only applies to --target compose"),
    (["--target", "kubernetes", "--shm-size", "huge"], "--shm-size 'huge' is not a size"),
    (["--target", "kubernetes", "--plan", "missing.json"], "no capacity plan at missing.json"),
    (["--target", "kubernetes", "--name", "Bad_Name"], "--name 'Bad_Name' is not a valid Kubernetes name"),
])
def test_bad_options_are_one_line_errors(cli, repositories, tmp_path, args, message):
    result = cli("deploy", repositories["cpu"], "--output", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


def test_missing_repository(cli, tmp_path):
    result = cli("deploy", tmp_path / "nothing", "--target", "kubernetes", "--json")
    assert result.exit_code == 2 and result.json()["ok"] is False
    assert "does not exist" in result.json()["error"]


def test_rollouts_is_a_compose_option_kept_by_later_writes(cli, repositories, tmp_path):
    import shutil

    repository = shutil.copytree(repositories["cpu"], tmp_path / "model_repository")
    result = cli("deploy", repository, "--rollouts")
    assert result.exit_code == 0, result.stderr
    env = (tmp_path / "deploy" / ".env").read_text()
    assert "TRITON_ADMIN_KEY=" in env
    assert cli("deploy", repository).exit_code == 0  # as the folder was written
    assert "--model-control-mode=explicit" in (tmp_path / "deploy" / "docker-compose.yml").read_text()
    assert cli("deploy", repository, "--no-rollouts").exit_code == 0
    assert "--model-control-mode=none" in (tmp_path / "deploy" / "docker-compose.yml").read_text()
    result = cli("deploy", repository, "--target", "kubernetes", "--rollouts")
    assert result.exit_code == 2 and "--rollouts only applies to --target compose" in result.stderr
