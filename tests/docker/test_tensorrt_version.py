"""`validate --server docker` refuses a TensorRT plan built with another TensorRT than the image's.

The plan itself is a stand-in (TensorRT cannot be installed here); the image is a real local image whose
environment says which TensorRT it carries, as NVIDIA's images do with TRT_VERSION.
"""

from __future__ import annotations

import io
import json

import pytest

from tests.docker.conftest import BASE_IMAGE
from tritongen.errors import TritongenError
from tritongen.validate import validate_repository

pytestmark = pytest.mark.docker

CONFIG = """name: "det"
platform: "tensorrt_plan"
max_batch_size: 8
input { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }
output { name: "y" data_type: TYPE_FP32 dims: [ 4 ] }
instance_group [ { count: 1 kind: KIND_GPU } ]
"""


@pytest.fixture
def image_with_tensorrt_10_5(docker_client):
    tag = "tritongen-test/trt-version:10.5"
    dockerfile = f"FROM {BASE_IMAGE}\nENV TRT_VERSION=10.5.0.18\nLABEL tritongen=1\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=tag, rm=True)
    yield tag
    docker_client.images.remove(tag, force=True)


def test_mismatched_plan_is_refused_before_the_container_starts(tmp_path, image_with_tensorrt_10_5, docker_client):
    version_dir = tmp_path / "repo" / "det" / "1"
    (version_dir / "tritongen").mkdir(parents=True)
    (tmp_path / "repo" / "det" / "config.pbtxt").write_text(CONFIG)
    (version_dir / "model.plan").write_bytes(b"not a real engine")
    (version_dir / "tritongen" / "manifest.json").write_text(json.dumps({"tensorrt": {"tensorrt_version": "10.3.0.26"}}))
    before = {c.id for c in docker_client.containers.list(all=True)}
    with pytest.raises(TritongenError) as err:
        validate_repository(tmp_path / "repo", server="docker", image=image_with_tensorrt_10_5)
    assert "TensorRT 10.3.0.26 plan but the server runs TensorRT 10.5.0.18" in err.value.message
    assert "--trt-image" in err.value.hint
    assert {c.id for c in docker_client.containers.list(all=True)} == before
