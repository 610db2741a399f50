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


SLOW_MODEL = """
import time
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        time.sleep(3)
        return [pb_utils.InferenceResponse([pb_utils.Tensor("y", pb_utils.get_input_tensor_by_name(r, "x").as_numpy())])
                for r in requests]
"""


def test_a_request_in_flight_is_answered_when_the_container_stops(tmp_path, slim_image, docker_client):
    """As the compose file runs it (an init as PID 1, a stop grace longer than Triton's exit timeout): SIGTERM reaches
    tritonserver, which answers the request it is running before it exits, with code 0."""
    import threading

    import tritonclient.http as httpclient

    from tritongen.deploy.command import EXIT_TIMEOUT_S, triton_args
    from tritongen.deploy.compose import STOP_GRACE_S

    model = tmp_path / "model_repository" / "slow"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_text(SLOW_MODEL)
    (model / "config.pbtxt").write_text('name: "slow"\nbackend: "python"\nmax_batch_size: 0\n'
                                        'input { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }\n'
                                        'output { name: "y" data_type: TYPE_FP32 dims: [ 4 ] }\n')
    container = docker_client.containers.run(
        slim_image, triton_args("/models"), name=f"tritongen-test-stop-{uuid.uuid4().hex[:8]}", detach=True,
        init=True, shm_size="256m", volumes={str(model.parent): {"bind": "/models", "mode": "ro"}},
        ports={"8000/tcp": ("127.0.0.1", None)}, labels={"tritongen": "1", "tritongen.purpose": "test"})
    try:
        container.reload()
        url = f"127.0.0.1:{container.attrs['NetworkSettings']['Ports']['8000/tcp'][0]['HostPort']}"
        client = httpclient.InferenceServerClient(url, network_timeout=60)
        deadline = time.monotonic() + 90
        while not _ready(client):
            assert time.monotonic() < deadline, container.logs().decode()[-3000:]
            time.sleep(0.5)
        answer: dict[str, object] = {}

        def infer() -> None:
            own = httpclient.InferenceServerClient(url, network_timeout=60)  # tritonclient.http: one per thread
            item = httpclient.InferInput("x", [4], "FP32")
            item.set_data_from_numpy(np.arange(4, dtype=np.float32))
            try:
                answer["y"] = own.infer("slow", [item]).as_numpy("y")
            except Exception as exc:  # the assertion below says what happened
                answer["error"] = exc
            own.close()

        client.close()  # an open keep-alive connection holds Triton's exit until its exit timeout (measured)
        thread = threading.Thread(target=infer)
        thread.start()
        time.sleep(1.0)  # the request is running in the model now
        started = time.monotonic()
        container.stop(timeout=STOP_GRACE_S)
        stopped_in = time.monotonic() - started
        thread.join(timeout=30)
        assert "error" not in answer, answer.get("error")
        np.testing.assert_array_equal(answer["y"], np.arange(4, dtype=np.float32))
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, container.logs().decode()[-2000:]
        assert 1.0 < stopped_in < EXIT_TIMEOUT_S  # waited for the request, then exited on its own
    finally:
        container.remove(force=True)
