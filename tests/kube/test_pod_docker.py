"""The generated Deployment's Triton container, run by Docker with tritongen's slim image: as close to the pod as
can be without a cluster.

From the rendered deployment.yaml: the image, the args, the user and group, a read-only root filesystem, no new
privileges and no capabilities, /dev/shm of the shm volume's size, an empty /tmp, the repository read-only at its
mount path (a bind mount stands in for the PersistentVolumeClaim), the probes' paths and ports, and a stop within the
termination grace period. Not the kubelet, not Kubernetes' networking: no cluster runs here.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
import uuid

import numpy as np
import pytest
import yaml

from tritongen.kube import write_target
from tritongen.server.local import free_ports

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="module")
def docker_client():
    from tests.docker.conftest import skip_or_fail
    from tritongen.errors import TritongenError
    from tritongen.server.docker import docker_client as connect

    try:
        client = connect()
    except TritongenError as exc:
        skip_or_fail(f"no Docker engine: {exc.message}")
    yield client
    client.close()


def status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def docker_size(quantity: str) -> int:
    number, unit = int(quantity[:-2]), quantity[-2:]
    return number * {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}[unit]


def test_deployment_container_runs_as_written_on_the_slim_image(docker_client, cnn_repository, tmp_path):
    import docker

    from tritongen.deploy import SLIM_IMAGE

    try:
        docker_client.images.get(SLIM_IMAGE)
    except docker.errors.ImageNotFound:
        from tests.docker.conftest import skip_or_fail

        skip_or_fail(f"the slim Triton image {SLIM_IMAGE} is not built")
    write_target(cnn_repository, "kubernetes", tmp_path / "k8s")
    deployment = yaml.safe_load((tmp_path / "k8s" / "deployment.yaml").read_text())
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["image"] == SLIM_IMAGE
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    shm = volumes[mounts["/dev/shm"]["name"]]["emptyDir"]
    assert shm["medium"] == "Memory"
    security, pod_security = container["securityContext"], spec["securityContext"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    host_ports = free_ports(3)
    name = f"tritongen-kube-{uuid.uuid4().hex[:8]}"
    run = docker_client.containers.run(
        container["image"], command=container["args"], name=name, detach=True,
        user=f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}", group_add=[str(pod_security["fsGroup"])],
        read_only=security["readOnlyRootFilesystem"], cap_drop=security["capabilities"]["drop"],
        security_opt=["no-new-privileges"] if not security["allowPrivilegeEscalation"] else [],
        shm_size=docker_size(shm["sizeLimit"]), tmpfs={"/tmp": ""},
        volumes={str(cnn_repository): {"bind": mounts["/models"]["mountPath"], "mode": "ro"}},
        ports={f"{port}/tcp": ("127.0.0.1", host) for port, host in zip(ports.values(), host_ports, strict=True)},
        labels={"tritongen": "1", "tritongen.test": "kube-pod"})
    try:
        host = dict(zip(ports, host_ports, strict=True))
        port_of = {name: host[name] for name in ports}
        ready = container["readinessProbe"]["httpGet"]
        url = f"http://127.0.0.1:{port_of[ready['port']]}{ready['path']}"
        deadline = time.monotonic() + 120
        while status(url) != 200:
            run.reload()
            assert run.status == "running", f"container stopped: {run.logs().decode()[-3000:]}"
            assert time.monotonic() < deadline, f"not ready in 120 s: {run.logs().decode()[-3000:]}"
            time.sleep(1)
        live = container["livenessProbe"]["httpGet"]
        assert status(f"http://127.0.0.1:{port_of[live['port']]}{live['path']}") == 200
        startup = container["startupProbe"]["httpGet"]
        assert status(f"http://127.0.0.1:{port_of[startup['port']]}{startup['path']}") == 200

        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(f"127.0.0.1:{port_of['http']}")
        item = httpclient.InferInput("image", [4, 3, 32, 32], "FP32")
        item.set_data_from_numpy(np.random.rand(4, 3, 32, 32).astype(np.float32))
        assert client.infer("cnn", [item]).as_numpy("output").shape == (4, 10)  # through /dev/shm, as uid 1000
        client.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{port_of['metrics']}/metrics", timeout=5) as response:
            assert "nv_inference_queue_duration_us{" in response.read().decode()

        started = time.monotonic()
        run.stop(timeout=spec["terminationGracePeriodSeconds"])  # SIGTERM, then SIGKILL after the grace period
        stopped_in = time.monotonic() - started
        run.reload()
        assert run.attrs["State"]["ExitCode"] == 0, run.logs().decode()[-3000:]  # exited by itself, not killed
        assert stopped_in < spec["terminationGracePeriodSeconds"]
    finally:
        run.remove(force=True)
