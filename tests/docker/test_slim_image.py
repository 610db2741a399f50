"""The slim image as built from the generated Dockerfile: not root by default, and serving under an arbitrary uid
with a read-only root filesystem (NVIDIA's image cannot: server #2600), its response cache included."""

from __future__ import annotations

import re
import shutil
import time
import urllib.request
import uuid

import numpy as np
import pytest

from tests.rollout.versions import MODEL, OUTPUT
from tritongen.deploy.command import cache_args, metrics_args

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_slim_image_runs_as_a_non_root_user_by_default(slim_image, docker_client):
    config = docker_client.images.get(slim_image).attrs["Config"]
    assert config["User"] == "1000:1000"
    assert set(metrics_args()) <= set(config["Cmd"])


def test_slim_image_serves_under_an_arbitrary_uid_read_only_with_its_response_cache(two_versions, tmp_path, slim_image,
                                                                                   docker_client):
    import tritonclient.http as httpclient

    repository = tmp_path / "model_repository"
    shutil.copytree(two_versions / MODEL, repository / MODEL)
    config = repository / MODEL / "config.pbtxt"
    config.write_text(config.read_text() + "\nresponse_cache { enable: true }\n")
    name = f"tritongen-test-uid-{uuid.uuid4().hex[:8]}"
    container = docker_client.containers.run(
        slim_image, ["tritonserver", "--model-repository=/models", "--disable-auto-complete-config", *metrics_args(),
                     *cache_args(1 << 24)],
        name=name, detach=True, user="54321:54321", read_only=True, tmpfs={"/tmp": ""}, shm_size="256m",
        volumes={str(repository): {"bind": "/models", "mode": "ro"}}, ports={"8000/tcp": ("127.0.0.1", None),
                                                                           "8002/tcp": ("127.0.0.1", None)},
        labels={"tritongen": "1", "tritongen.purpose": "test"})
    try:
        container.reload()
        ports = {p: container.attrs["NetworkSettings"]["Ports"][f"{p}/tcp"][0]["HostPort"] for p in (8000, 8002)}
        client = httpclient.InferenceServerClient(f"127.0.0.1:{ports[8000]}")
        deadline = time.monotonic() + 90
        while not _ready(client):
            container.reload()
            assert container.status == "running", container.logs().decode()[-3000:]
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(0.5)
        for _ in range(3):
            item = httpclient.InferInput("x", [1, 4], "FP32")
            item.set_data_from_numpy(np.ones((1, 4), np.float32))
            assert client.infer(MODEL, [item]).as_numpy(OUTPUT).shape == (1, 3)
        client.close()
        processes = container.top(ps_args="-o pid,uid,args")["Processes"]
        assert processes and all(uid == "54321" for _, uid, _ in processes), processes  # server and stub alike
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{ports[8002]}/metrics", timeout=10) as response:
            text = response.read().decode()
        hits = re.search(rf'^nv_cache_num_hits_per_model\{{model="{MODEL}",version="2"\}} (\S+)$', text, flags=re.M)
        assert hits and float(hits.group(1)) == 2  # the same input three times: one miss, then two hits
        assert 'nv_inference_queue_summary_us{model="lin",version="2",quantile="0.99"}' in text
    finally:
        container.remove(force=True)


def _ready(client: object) -> bool:
    try:
        return bool(client.is_server_ready())  # type: ignore[attr-defined]
    except Exception:  # not listening yet
        return False
