"""A plan loads only in the TensorRT that built it: the version checks."""

from __future__ import annotations

import pytest

from tritongen.errors import TritongenError
from tritongen.formats.tensorrt.versions import (
    check_plan_version,
    plan_version_problem,
    plan_versions_compatible,
    tensorrt_version_from_env,
    version_mismatch_in_log,
)


def test_plan_versions_must_match_to_the_patch_level() -> None:
    assert plan_versions_compatible("10.3.0.26", "10.3.0.26") and plan_versions_compatible("10.3.0.26", "10.3.0")
    assert not plan_versions_compatible("8.0.0.3", "8.0.1.6") and not plan_versions_compatible("10.3.0", "10.4.0")
    assert plan_version_problem("10.3.0.26", None, "m") is None
    problem = plan_version_problem("10.0.1.6", "10.3.0.26", "resnet")
    assert problem and "TensorRT 10.0.1.6 plan but the server runs TensorRT 10.3.0.26" in problem
    with pytest.raises(TritongenError) as err:
        check_plan_version("10.0.1.6", "10.3.0.26", "resnet")
    assert "model 'resnet'" in err.value.message and "--trt-image" in err.value.hint


def test_version_mismatch_from_the_server_log_and_image_environment() -> None:
    log = ("E0530 logging.cc:43] 6: The engine plan file is not compatible with this version of TensorRT, "
           "expecting library version 8.2.4 got 8.2.3, please rebuild.")
    assert "8.2.4 vs 8.2.3" in version_mismatch_in_log(log)
    assert version_mismatch_in_log("all good") is None
    assert tensorrt_version_from_env(["PATH=/usr/bin", "TRT_VERSION=10.3.0.26"]) == "10.3.0.26"
    assert tensorrt_version_from_env({"TENSORRT_VERSION": "8.6.1.6"}) == "8.6.1.6"
    assert tensorrt_version_from_env(["CUDA_VERSION=12.6"]) is None


@pytest.mark.docker
def test_version_from_the_libraries_in_an_image_leaves_no_container(tmp_path) -> None:
    """An image without TRT_VERSION: the version comes from libnvinfer's file name, read in a one-off container."""
    import io

    import docker

    from tests.docker.conftest import BASE_IMAGE, skip_or_fail
    from tritongen.formats.tensorrt.versions import tensorrt_version_of_image
    from tritongen.server.docker import docker_client

    try:
        client = docker_client()
        client.images.get(BASE_IMAGE)
    except (TritongenError, docker.errors.ImageNotFound) as exc:
        skip_or_fail(f"needs a Docker engine and {BASE_IMAGE}: {exc}")
    tag = "tritongen-test/trt-libs:10.3"
    dockerfile = (f"FROM {BASE_IMAGE}\nLABEL tritongen=1\nRUN mkdir -p /usr/lib/x86_64-linux-gnu && "
                  "touch /usr/lib/x86_64-linux-gnu/libnvinfer.so.10.3.0 /usr/lib/x86_64-linux-gnu/libnvinfer.so.8.6.1\n")
    client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    try:
        probes = {"label": "tritongen.purpose=TensorRT version probe"}  # ours only: other tests use the engine too
        before = {c.id for c in client.containers.list(all=True, filters=probes)}
        assert tensorrt_version_of_image(tag, client) == "10.3.0"
        assert tensorrt_version_of_image(BASE_IMAGE, client) is None
        assert {c.id for c in client.containers.list(all=True, filters=probes)} == before
    finally:
        client.images.remove(tag, force=True)
        client.close()
