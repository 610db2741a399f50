"""Pipelines in Docker: the slim image built from a pipeline's deploy folder holds what its steps import
(tokenizers, Pillow, numpy, pinned as the steps' manifests say), and `validate --server docker` passes every model of
three pipelines (a text classifier, a sentence embedder, an image classifier) in that image."""

from __future__ import annotations

import uuid

import pytest

from tritongen.deploy import write_deploy
from tritongen.repository import read_model_dir

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_the_slim_image_of_a_pipelines_deploy_folder_serves_every_pipeline(pipeline_builds, base_image, docker_client,
                                                                            tmp_path, cli) -> None:
    import docker

    assert pipeline_builds.exit_code == 0, pipeline_builds.output
    deploy = tmp_path / "deploy"
    write_deploy(pipeline_builds.repository, deploy)
    pins = (deploy / "requirements.txt").read_text().split()
    steps = [read_model_dir(pipeline_builds.repository / f"{name}_{step}")
             for name in ("sentiment", "embedder", "vision") for step in ("preprocess", "postprocess")]
    wanted = {r for m in steps for r in m.manifest["python_requirements"]}
    assert {"tokenizers", "pillow"} <= {r.split("==")[0] for r in wanted}
    assert wanted <= set(pins), (wanted, pins)  # what the steps were checked with, exactly

    tag = f"tritongen-test/pipelines:{uuid.uuid4().hex[:6]}"
    try:
        built = cli("image", "build", "--deploy", deploy, "--base-image", base_image, "--tag", tag, "--quiet", "--json")
        assert built.exit_code == 0, built.stdout + built.stderr
        # Under its own tag the image is still known to have the python backend only (its label says so), so the
        # networks are served through the python runner, as in the slim image.
        result = cli("validate", pipeline_builds.repository, "--server", "docker", "--image", tag, "--json")
        assert result.exit_code == 0, result.stdout[-3000:] + result.stderr[-2000:]
        report = result.json()
        assert report["passed"] and tag in report["server"]
        served = {m["name"]: m for m in report["models"]}
        assert {"sentiment", "embedder", "vision"} <= set(served)
        assert len(served) == 12
        assert all(served[n]["served_by"] == "ensemble backend" for n in ("sentiment", "embedder", "vision"))
        assert all(m["served_by"].startswith("python-runner") for n, m in served.items() if n.endswith("_model"))
    finally:
        try:
            docker_client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass
